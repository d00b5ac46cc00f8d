"""Mark(model, mk) inside the user's own training loop: wrap their batches so each carries triggers.

In the shape of opacus: the user's DataLoader (or any iterable of ``(inputs, labels)`` batches) is wrapped
and behaves like it, so their loop, optimiser and loss stay theirs. As in the paper's reference code, k
trigger samples (default 2 per batch of 100) are concatenated to every batch with their key labels and
plain cross-entropy does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

from backmark.errors import BackmarkError
from backmark.keys.model import MarkingKey
from backmark.training.batches import TriggerStream

Transform = Callable[[torch.Tensor], torch.Tensor]


class TriggerLoader:
    """Iterate like the wrapped loader, with ``per_batch`` trigger samples appended to every batch.

    Args:
        loader: any iterable of ``(inputs, labels)`` with inputs float (B, C, H, W) and labels int (B,).
        key: the marking key whose triggers (uint8 pixels, read as [0, 1]) and labels are mixed in.
        per_batch: trigger samples per batch (k); the paper used 2 per 100 training images.
        transform: applied to the float [0, 1] trigger batch so it matches the user's preprocessing
            (for example normalisation); leave it None when the model normalises its own inputs, as
            every backmark architecture does.
        seed: seeds the trigger order, for reproducible runs.
    """

    def __init__(
        self,
        loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
        key: MarkingKey,
        *,
        per_batch: int = 2,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        if per_batch < 1:
            raise BackmarkError(f"triggers per batch must be at least 1, got {per_batch}")
        self.loader = loader
        self.per_batch = per_batch
        self.transform = transform
        self.images, self.labels = key.trigger_tensors()
        gen = torch.Generator()
        gen.manual_seed(seed if seed is not None else int(torch.randint(2**62, (1,))))
        self.stream = TriggerStream(key.n, generator=gen)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def triggers(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``per_batch`` triggers, on the device and in the dtype of ``like``."""
        idx = self.stream.take(self.per_batch)
        x = self.images[idx]
        if self.transform is not None:
            x = self.transform(x)
        return x.to(device=like.device, dtype=like.dtype), self.labels[idx].to(like.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, targets in self.loader:
            if inputs.shape[1:] != self.images.shape[1:]:
                raise BackmarkError(
                    f"training batches have shape {tuple(inputs.shape[1:])} but the key's triggers "
                    f"are {tuple(self.images.shape[1:])}; make the key with the model's input shape"
                )
            tx, ty = self.triggers(inputs)
            yield torch.cat([inputs, tx]), torch.cat([targets, ty.to(targets.dtype)])


def mark_loader(
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    key: MarkingKey,
    *,
    per_batch: int = 2,
    transform: Transform | None = None,
    seed: int | None = None,
) -> TriggerLoader:
    """Wrap ``loader`` so that training on it embeds ``key``; see :class:`TriggerLoader`."""
    return TriggerLoader(loader, key, per_batch=per_batch, transform=transform, seed=seed)
