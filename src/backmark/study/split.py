"""The threat model's data split: the attacker holds a share of the training data, the owner the rest.

As in the standard benchmark (Lukas et al., "SoK: How Robust is Image Classification Deep Neural Network
Watermarking?", IEEE S&P 2022, https://arxiv.org/abs/2108.04974): a seeded random third of the training set
goes to the attacker, the other two thirds to the owner, who trains and marks its models on them only. Both
keep the whole test set, which is used only to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backmark.attacks import AttackData
from backmark.data import ImageDataset
from backmark.errors import BackmarkError

ATTACKER_FRACTION = 1 / 3


@dataclass(frozen=True, eq=False)
class ThreatSplit:
    """The owner's and the attacker's datasets (disjoint training images, one shared test set)."""

    owner: ImageDataset
    attacker: ImageDataset
    attacker_fraction: float
    seed: int

    @property
    def attacker_data(self) -> AttackData:
        """The attacker's training images and labels, as attacks take them."""
        return AttackData.from_dataset(self.attacker)


def threat_model_split(
    data: ImageDataset, *, attacker_fraction: float = ATTACKER_FRACTION, seed: int = 0
) -> ThreatSplit:
    """Split ``data``'s training set at random (seeded) into the owner's and the attacker's parts.

    ``attacker_fraction`` of the images (rounded) go to the attacker; each part keeps the original order.
    """
    if not 0 < attacker_fraction < 1:
        raise BackmarkError(
            f"the attacker's fraction must lie strictly between 0 and 1, got {attacker_fraction}"
        )
    total = len(data.train_x)
    count = round(attacker_fraction * total)
    if not 0 < count < total:
        raise BackmarkError(
            f"{total} training images cannot be split {attacker_fraction:.3g} / {1 - attacker_fraction:.3g}"
        )
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    parts = [order[:count].sort().values, order[count:].sort().values]
    attacker, owner = (
        ImageDataset(data.name, data.train_x[i], data.train_y[i], data.test_x, data.test_y, data.classes)
        for i in parts
    )
    return ThreatSplit(owner, attacker, attacker_fraction, seed)
