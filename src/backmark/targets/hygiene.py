"""Query hygiene: hide the trigger images among ordinary images, so a suspect cannot single them out.

A suspect server can answer trigger-looking queries differently, or watch for a burst of unusual ones.
:class:`DecoyTarget` wraps any target: each ``predict`` call mixes the images it is given with ``count``
decoys drawn at random from ordinary data, sends all of them in one random order (so every batch the
wrapped target sends is a random mix) and returns only the answers to the images it was given. Decoys
are quantised exactly like triggers (uint8 / 255), so no pixel statistic tells them apart by precision.

What it does not hide: an image that looks out of distribution on its own (abstract triggers do) can
still be detected one by one. Decoys defeat filters on batches, order and timing, not an outlier detector.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from backmark.data import ImageDataset, load_dataset
from backmark.errors import BackmarkError
from backmark.targets.protocol import Target, check_target

# The dataset whose test split serves as decoys by default, by the key's input shape.
DEFAULT_DECOY_DATA = {(1, 28, 28): "fashion-mnist"}


@dataclass(frozen=True)
class DecoyQueries:
    """What the last ``predict`` call sent: images in total, the caller's, decoys, and how decoys fared.

    ``decoy_accuracy`` is the fraction of decoys answered with their true label (None without labels):
    a server that answers ordinary images badly is not the model it claims to be, whatever it says to
    the triggers.
    """

    queries: int
    images: int
    decoys: int
    decoy_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_decoys(count: int, decoys: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    """Raise BackmarkError unless ``count`` decoys can be drawn, without repeats, from ``decoys``."""
    if count < 0:
        raise BackmarkError(f"{{decoys}} must not be negative, got {count}", params=["decoys"])
    if count > len(decoys):
        raise BackmarkError(f"asked for {count} decoys but the decoy data has only {len(decoys)} images")
    if labels is not None and labels.shape != (len(decoys),):
        raise BackmarkError(f"decoy labels have shape {tuple(labels.shape)} for {len(decoys)} images")


class DecoyTarget:
    """``target`` queried with the images interleaved at random among ``count`` decoys per call.

    ``decoys`` is uint8 (N, C, H, W) (pixels 0..255) or float in [0, 1]; ``labels`` int64 (N,) their
    true labels, optional. ``seed`` fixes the draws (tests); by default they come from the OS, so the
    suspect cannot predict where the triggers are. Decoys are drawn without replacement, so none repeats.
    """

    def __init__(
        self,
        target: Target,
        decoys: torch.Tensor,
        *,
        count: int,
        labels: torch.Tensor | None = None,
        seed: int | None = None,
    ) -> None:
        check_decoys(count, decoys, labels)
        self.target = target
        self.decoys = decoys
        self.labels = labels
        self.count = count
        seed = int.from_bytes(os.urandom(8), "little") if seed is None else seed
        self._generator = torch.Generator().manual_seed(seed)
        self.last: DecoyQueries | None = None

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if shape != tuple(self.decoys.shape[1:]):
            raise BackmarkError(
                f"decoys are {'x'.join(map(str, self.decoys.shape[1:]))} images but the queries are "
                f"{'x'.join(map(str, shape))}; pass decoy data of the key's shape"
            )

    def check_fits(self, *, input_shape: tuple[int, int, int], num_classes: int | None) -> None:
        """The decoys' shape against the key's, then the wrapped target's own check."""
        self._check_shape(input_shape)
        check_target(self.target, input_shape=input_shape, num_classes=num_classes)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        self._check_shape(tuple(images.shape[1:]))
        pick = torch.randperm(len(self.decoys), generator=self._generator)[: self.count]
        decoys = self.decoys[pick]
        decoys = decoys.float() / 255.0 if decoys.dtype == torch.uint8 else decoys.float()
        mixed = torch.cat([images.float(), decoys])
        order = torch.randperm(len(mixed), generator=self._generator)
        answers = self.target.predict(mixed[order])
        if tuple(answers.shape) != (len(mixed),):
            raise BackmarkError(f"the target answered {tuple(answers.shape)} labels for {len(mixed)} images")
        unshuffled = torch.empty_like(answers)
        unshuffled[order] = answers
        n = len(images)
        accuracy = None
        if self.labels is not None and self.count:
            accuracy = float((unshuffled[n:] == self.labels[pick]).double().mean())
        self.last = DecoyQueries(queries=len(mixed), images=n, decoys=self.count, decoy_accuracy=accuracy)
        return unshuffled[:n]


def load_decoys(spec: str | None, *, input_shape: tuple[int, int, int]) -> ImageDataset:
    """The dataset ``spec`` names (its test split gives the decoys), or the default for ``input_shape``.

    Without ``spec`` only a locally installed copy is used (nothing is downloaded unasked); a missing one,
    or data of another image shape than the key's, is a BackmarkError that says what to pass.
    """
    shape = "x".join(map(str, input_shape))
    if spec is None:
        default = DEFAULT_DECOY_DATA.get(input_shape)
        if default is None:
            raise BackmarkError(
                f"{{decoys}} needs decoy images of the key's shape {shape}; pass {{decoy_data}} SPEC "
                "(for example cifar10:DIR for 3x32x32 keys)",
                params=["decoys", "decoy_data"],
            )
        try:
            data = load_dataset(default, download=False)
        except BackmarkError as exc:
            raise BackmarkError(
                f"{{decoys}} needs decoy images and the default, {default}, is not installed ({exc}); pass "
                f"{{decoy_data}} {default} to download it, or another dataset of {shape} images",
                params=["decoys", "decoy_data"],
            ) from None
    else:
        data = load_dataset(spec)
    if data.input_shape != input_shape:
        got = "x".join(map(str, data.input_shape))
        raise BackmarkError(f"decoy data {data.name} has {got} images but the key has {shape} images")
    return data
