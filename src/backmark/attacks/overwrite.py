"""Overwriting: fine-tune on the attacker's data plus random images with uniformly random labels.

An attacker who knows how backmark marks a model knows that the mark lives in its answers to
out-of-distribution images (abstract art or noise, each with a random label), without knowing which
images. It can overwrite the model's behaviour on that whole region of input space at once: fine-tune
all layers on its own clean data mixed with fresh random images, each labelled uniformly at random, so
that the model learns to answer any such image arbitrarily instead of with the owner's label. It is one
of the attacks that know the scheme (issue 12), under the threat model of Lukas et al., "SoK: How Robust
is Image Classification Deep Neural Network Watermarking?" (IEEE S&P 2022,
https://arxiv.org/abs/2108.04974): the attacker holds a third of the training data.

The random images are drawn fresh on every run from the attack's seed: ``noise`` is uniformly random
pixels; ``abstract`` is smooth random patterns (a few octaves of low-resolution noise, upsampled and
summed, then folded through a random sinusoid into bands of light and dark), a cheap stand-in for
abstract art that the attacker does not need the owner's generator for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from backmark.attacks._fit import fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.registry import register_attack

RandomKind = Literal["noise", "abstract"]
RANDOM_KINDS: tuple[str, ...] = get_args(RandomKind)
_OCTAVES = ((3, 1.0), (6, 0.5), (12, 0.25))  # (grid side, weight) of the abstract patterns' noise


def random_images(
    kind: RandomKind, count: int, shape: tuple[int, int, int], generator: torch.Generator
) -> torch.Tensor:
    """``count`` random images of ``shape`` (C, H, W) as float32 (count, C, H, W) in [0, 1].

    ``noise``: every pixel uniform on [0, 1]. ``abstract``: smooth patterns, a sum of bilinearly
    upsampled noise grids of 3, 6 and 12 cells per side, stretched to [0, 1] per image and passed through
    ``0.5 + 0.5 sin(2 pi f x + phase)`` with a random frequency f in [0.5, 2.5) and phase, so each image
    has its own bands of light and dark.
    """
    c, h, w = shape
    if kind == "noise":
        return torch.rand((count, c, h, w), generator=generator)
    field = torch.zeros(count, c, h, w)
    for side, weight in _OCTAVES:
        grid = torch.rand((count, c, side, side), generator=generator)
        field += weight * F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    low = field.amin(dim=(1, 2, 3), keepdim=True)
    high = field.amax(dim=(1, 2, 3), keepdim=True)
    field = (field - low) / (high - low).clamp_min(1e-6)
    freq = 0.5 + 2 * torch.rand((count, 1, 1, 1), generator=generator)
    phase = 2 * torch.pi * torch.rand((count, 1, 1, 1), generator=generator)
    return 0.5 + 0.5 * torch.sin(2 * torch.pi * freq * field + phase)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] as uint8 pixels 0..255 (rounded), as attacker data holds them."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8)


def generator() -> torch.Generator:
    """A CPU generator seeded from the global one, which the attack seeded (Attack.__call__)."""
    return torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))


@register_attack("overwrite")
@dataclass(frozen=True, kw_only=True)
class Overwrite(WeightAttack):
    """Overwrite: fine-tune all layers on the attacker's data plus random images with random labels.

    Scheme-aware: backmark's triggers are out-of-distribution images with uniformly random labels, so
    training the model to answer fresh random images arbitrarily aims at the region where the mark
    lives. The random images (``count`` of them, drawn from the seed) join the attacker's images and are
    shuffled with them; their labels are uniform over the model's classes.

    Arguments:
        epochs (int): training epochs over the mixed data (default 5; 1..1000).
        lr (float): constant SGD learning rate (default 0.01; (0, 1]).
        kind (str): ``noise`` (default: uniform random pixels) or ``abstract`` (smooth random patterns,
            :func:`random_images`).
        count (int): random images added to the attacker's data (default 1000; 1..1000000).
        seed (int): seeds the random images, their labels, the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.
        The random images have the attacker's image shape.

    Example:
        >>> stolen = Overwrite(kind="abstract", epochs=5, lr=0.01)(marked, attacker_data)
    """

    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("kind", "epochs", "lr")

    epochs: int = 5
    lr: float = 0.01
    kind: RandomKind = "noise"
    count: int = 1000

    def check(self) -> None:
        require_options(self, {**TRAINING, "kind": RANDOM_KINDS, "count": "1..1000000"})

    def random_set(self, data: AttackData) -> AttackData:
        """The random images and their uniformly random labels (draws from the global generator)."""
        gen = generator()
        images = to_uint8(random_images(self.kind, self.count, data.input_shape, gen))
        labels = torch.randint(data.num_classes, (self.count,), generator=gen)
        return AttackData(images, labels, data.num_classes)

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        extra = self.random_set(data)
        mixed = AttackData(
            torch.cat([data.images, extra.images]), torch.cat([data.labels, extra.labels]), data.num_classes
        )
        fit(model, mixed, epochs=self.epochs, lr=self.lr, monitor=monitor)
        return model
