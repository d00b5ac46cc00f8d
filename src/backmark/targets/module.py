"""A local PyTorch model as a label-only target."""

from __future__ import annotations

import torch
from torch import nn

from backmark.errors import BackmarkError
from backmark.models.modes import evaluating
from backmark.targets.protocol import Target


class ModuleTarget:
    """A PyTorch model as a label-only target: eval mode, no gradients, argmax of the outputs.

    The training mode of every submodule is restored afterwards (so a model fine-tuned with some layers
    frozen in eval mode keeps them so), and it is queried in batches of ``batch_size``.
    """

    def __init__(self, model: nn.Module, *, batch_size: int = 256) -> None:
        if batch_size < 1:
            raise BackmarkError(f"the query batch size must be at least 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        out = self._outputs(images)
        return out.argmax(dim=1) if len(out) else torch.empty(0, dtype=torch.int64)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """The model's outputs (logits) for float (B, C, H, W) ``images``: float (B, K) on the CPU."""
        return self._outputs(images)

    def _outputs(self, images: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        out = []
        with evaluating(self.model), torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size].to(device)
                out.append(self.model(chunk).float().cpu())
        return torch.cat(out) if out else torch.empty(0)


def as_target(obj: nn.Module | Target) -> Target:
    """Wrap a module as a target; pass a target through."""
    if isinstance(obj, nn.Module):
        return ModuleTarget(obj)
    return obj
