"""Shared fixtures: the real Fashion-MNIST data, loaded once, and small seeded subsets of it."""

from __future__ import annotations

import pytest

from backmark.data import ImageDataset, load_dataset
from backmark.errors import BackmarkError


@pytest.fixture(scope="session")
def fashion() -> ImageDataset:
    try:
        return load_dataset("fashion-mnist", download=False)
    except BackmarkError as exc:
        pytest.skip(f"Fashion-MNIST not installed ({exc}); apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="session")
def fashion_small(fashion: ImageDataset) -> ImageDataset:
    return fashion.subset(train=4000, test=1000, seed=0)
