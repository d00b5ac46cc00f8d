"""Mark(model, mk) inside the user's own training loop: wrap their batches so each carries triggers.

In the shape of opacus: the user's DataLoader (or any iterable of ``(inputs, labels)`` batches) is wrapped
and behaves like it, so their loop, optimiser and loss stay theirs. As in the paper's reference code, k
trigger samples are concatenated to every batch with their key labels and plain cross-entropy does the
rest. The default k is 10% of the batch (:func:`triggers_for`), not the paper's 2 per 100: with 2, a
user's CNN in a plain SGD loop on 20,000 Fashion-MNIST images answered 19, 30 and 47 of 100 triggers
after epochs 1, 2 and 3; with 10 it answered 57, 91 and 100 (``benchmarks/own_loop.py``,
docs/embedding.md). :class:`backmark.embed.marker.Marker` adds checks, a progress signal and a trigger
phase around this loader.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch

from backmark.errors import BackmarkError
from backmark.keys.model import MarkingKey
from backmark.training.batches import TriggerStream

Transform = Callable[[torch.Tensor], torch.Tensor]

TRIGGER_SHARE = 0.1  # default triggers per batch, as a share of its training images (10 per 100) ...
MIN_TRIGGERS = 2  # ... but never fewer than the paper's 2
DEFAULT_BATCH = 100  # the batch size assumed for a loader that does not say its own


def triggers_for(batch_size: int, share: float = TRIGGER_SHARE) -> int:
    """Triggers per batch for ``batch_size`` training images: ``share`` of them, at least 2.

    >>> triggers_for(100), triggers_for(32), triggers_for(256)
    (10, 4, 26)
    """
    return max(MIN_TRIGGERS, math.ceil(share * batch_size - 1e-9))


def default_triggers(loader: object) -> int:
    """:func:`triggers_for` the loader's ``batch_size`` (a DataLoader's), or for 100 if it has none."""
    size = getattr(loader, "batch_size", None)
    return triggers_for(size if isinstance(size, int) and size > 0 else DEFAULT_BATCH)


class TriggerLoader:
    """Iterate like the wrapped loader, with ``per_batch`` trigger samples appended to every batch.

    Args:
        loader: any iterable of ``(inputs, labels)`` with inputs float (B, C, H, W) and labels int (B,).
        key: the marking key whose triggers (uint8 pixels, read as [0, 1]) and labels are mixed in.
        per_batch: trigger samples per batch (k); default :func:`default_triggers` (10% of the loader's
            ``batch_size``, at least 2); the paper used 2 per 100 training images.
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
        per_batch: int | None = None,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        if per_batch is None:
            per_batch = default_triggers(loader)
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
    per_batch: int | None = None,
    transform: Transform | None = None,
    seed: int | None = None,
) -> TriggerLoader:
    """Wrap ``loader`` so that training on it embeds ``key``; see :class:`TriggerLoader`."""
    return TriggerLoader(loader, key, per_batch=per_batch, transform=transform, seed=seed)
