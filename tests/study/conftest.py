"""Evaluation test fixtures: a small split of Fashion-MNIST and a model marked on the owner's part."""

from __future__ import annotations

import pytest
from response_helpers import checkpoint, model, rkey

from backmark.data import ImageDataset
from backmark.embed import TrainConfig, Trained, embed_from_scratch
from backmark.keys import MarkingKey, generate_key
from backmark.study import ThreatSplit, threat_model_split

SUBSET = {"train": 3000, "test": 600, "seed": 0}


@pytest.fixture(scope="session")
def small(fashion: ImageDataset) -> ImageDataset:
    return fashion.subset(**SUBSET)


@pytest.fixture(scope="session")
def split(small: ImageDataset) -> ThreatSplit:
    return threat_model_split(small, seed=0)


@pytest.fixture(scope="session")
def key() -> MarkingKey:
    return generate_key(num_classes=10, input_shape=(1, 28, 28), size=20, seed=b"\x09" * 32)


@pytest.fixture(scope="session")
def marked(split: ThreatSplit, key: MarkingKey) -> Trained:
    """The small CNN marked FromScratch on the owner's 2000 images (4 epochs, 16 triggers per batch)."""
    config = TrainConfig(epochs=4, triggers_per_batch=16, seed=0)
    return embed_from_scratch(split.owner, key, config=config, progress=False)


__all__ = ["checkpoint", "key", "marked", "model", "rkey", "small", "split"]
