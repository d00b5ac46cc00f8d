"""Magnitude pruning: set the smallest weights to zero.

Han et al., "Learning both Weights and Connections for Efficient Neural Networks" (NeurIPS 2015,
https://arxiv.org/abs/1506.02626) prune the weights of smallest magnitude; watermark evaluations use it as
a removal attack without retraining (Lukas et al., SoK, IEEE S&P 2022, https://arxiv.org/abs/2108.04974:
at sparsity 0.5 the backdoor watermark survives until the model itself is ruined).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from backmark.attacks.base import AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.registry import register_attack


def prunable(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors pruning acts on: those of every convolution and linear layer (no biases)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@torch.no_grad()
def zero_smallest(tensors: list[torch.Tensor], sparsity: float) -> None:
    """Zero exactly ``round(sparsity * total)`` entries of smallest magnitude across ``tensors``, in place."""
    flat = torch.cat([t.detach().abs().flatten() for t in tensors])
    count = round(sparsity * flat.numel())
    if count == 0:
        return
    mask = torch.ones_like(flat)
    mask[torch.argsort(flat, stable=True)[:count]] = 0.0
    offset = 0
    for t in tensors:
        t.mul_(mask[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


@register_attack("prune")
@dataclass(frozen=True, kw_only=True)
class MagnitudePruning(WeightAttack):
    """Magnitude pruning: zero the given fraction of convolution and linear weights of smallest |w|.

    Paper: Han et al., NeurIPS 2015 (https://arxiv.org/abs/1506.02626); used as a watermark removal attack
    in Lukas et al., SoK 2022 (https://arxiv.org/abs/2108.04974). No retraining.

    Arguments:
        sparsity (float): fraction of weights set to zero (default 0.5, the SoK's setting; [0, 1)).
        scope (str): ``layer`` (default: that fraction of every layer) or ``global`` (of all weights
            together, smallest first).
        seed (int): unused (pruning is deterministic); kept for a uniform interface.

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K), unchanged. Biases, batch-norm and the
        normalisation layer are left alone.

    Example:
        >>> sweep = [MagnitudePruning(sparsity=s) for s in (0.2, 0.5, 0.8)]
    """

    shown: ClassVar[tuple[str, ...]] = ("sparsity",)

    sparsity: float = 0.5
    scope: Literal["layer", "global"] = "layer"

    def check(self) -> None:
        require_options(self, {"sparsity": "[0, 1)", "scope": ("layer", "global")})

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        weights = prunable(model)
        if self.scope == "global":
            zero_smallest(weights, self.sparsity)
        else:
            for weight in weights:
                zero_smallest([weight], self.sparsity)
        return model
