"""The threat model's split: disjoint, seeded, sized as asked, the test set shared."""

from __future__ import annotations

import pytest
import torch

from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.study import threat_model_split


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_a_third_to_the_attacker_disjoint_from_the_owner(small: ImageDataset) -> None:
    split = threat_model_split(small, seed=0)
    assert len(split.attacker.train_x) == 1000 and len(split.owner.train_x) == 2000
    assert not _rows(split.attacker.train_x) & _rows(split.owner.train_x)
    assert _rows(split.attacker.train_x) | _rows(split.owner.train_x) == _rows(small.train_x)
    assert split.owner.test_x is small.test_x and split.attacker.test_y is small.test_y
    data = split.attacker_data
    assert data.num_classes == 10 and torch.equal(data.labels, split.attacker.train_y)


def test_the_split_is_seeded_and_configurable(small: ImageDataset) -> None:
    a, b = threat_model_split(small, seed=3), threat_model_split(small, seed=3)
    assert torch.equal(a.attacker.train_x, b.attacker.train_x)
    c = threat_model_split(small, seed=4)
    assert not torch.equal(a.attacker.train_x, c.attacker.train_x)
    half = threat_model_split(small, attacker_fraction=0.5)
    assert len(half.attacker.train_x) == len(half.owner.train_x) == 1500


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1e-6])
def test_fractions_that_leave_a_side_empty_are_refused(small: ImageDataset, fraction: float) -> None:
    with pytest.raises(BackmarkError, match=r"split|between 0 and 1"):
        threat_model_split(small, attacker_fraction=fraction)
