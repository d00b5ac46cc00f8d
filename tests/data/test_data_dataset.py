"""ImageDataset invariants, subset(), and spec parsing."""

from __future__ import annotations

import pytest
import torch

from backmark.data import ImageDataset, dataset_specs
from backmark.errors import BackmarkError


def _toy(n: int = 50, m: int = 20) -> ImageDataset:
    gen = torch.Generator().manual_seed(0)
    return ImageDataset(
        "toy",
        torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=gen),
        torch.arange(n) % 5,
        torch.randint(0, 256, (m, 3, 4, 4), dtype=torch.uint8, generator=gen),
        torch.arange(m) % 5,
        ("a", "b", "c", "d", "e"),
    )


def test_properties() -> None:
    ds = _toy()
    assert ds.num_classes == 5 and ds.input_shape == (3, 4, 4)


def test_subset_sizes_and_seed() -> None:
    ds = _toy()
    a = ds.subset(train=10, test=4, seed=3)
    b = ds.subset(train=10, test=4, seed=3)
    c = ds.subset(train=10, test=4, seed=4)
    assert a.train_x.shape == (10, 3, 4, 4) and a.train_y.shape == (10,)
    assert a.test_x.shape == (4, 3, 4, 4) and a.test_y.shape == (4,)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert a.classes == ds.classes and a.name == ds.name


def test_subset_rows_come_from_the_original() -> None:
    ds = _toy()
    sub = ds.subset(train=7)
    assert sub.test_x is ds.test_x  # None keeps the split whole
    flat = ds.train_x.flatten(1)
    for x, y in zip(sub.train_x.flatten(1), sub.train_y, strict=True):
        row = int((flat == x).all(dim=1).nonzero()[0])
        assert int(ds.train_y[row]) == int(y)


def test_subset_too_large() -> None:
    with pytest.raises(BackmarkError, match="cannot take 51 train examples from 'toy'"):
        _toy().subset(train=51)


def test_invalid_dataset_rejected() -> None:
    ds = _toy()
    with pytest.raises(BackmarkError, match=r"labels outside 0\.\.4"):
        ImageDataset("bad", ds.train_x, ds.train_y + 1, ds.test_x, ds.test_y, ds.classes)
    with pytest.raises(BackmarkError, match="must be uint8"):
        ImageDataset("bad", ds.train_x.float(), ds.train_y, ds.test_x, ds.test_y, ds.classes)


def test_dataset_specs_lists_forms() -> None:
    specs = dataset_specs()
    for form in ("fashion-mnist", "mnist:DIR", "cifar10:DIR", "cifar100:DIR", "imagefolder:DIR"):
        assert form in specs
