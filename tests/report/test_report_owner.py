"""The owner's models, one pipeline for the demo and the attack study: key, clean, marked, verified."""

from __future__ import annotations

import numpy as np
import pytest

from backmark.data import ImageDataset
from backmark.embed import TrainConfig
from backmark.report.owner import OwnerModels, derived_key, owner_models
from backmark.verify import verify


@pytest.fixture(scope="module")
def owner(fashion: ImageDataset) -> tuple[OwnerModels, list[str]]:
    data = fashion.subset(train=2000, test=400, seed=0)
    lines: list[str] = []
    config = TrainConfig(epochs=3, triggers_per_batch=10, seed=5)
    made = owner_models(
        data, key_size=20, purpose="test", config=config, pretrained_epochs=6, controls=1, log=lines.append
    )
    return made, lines


def test_every_model_is_trained_and_verified_in_order(owner: tuple[OwnerModels, list[str]]) -> None:
    made, lines = owner
    assert [m.name for m in made.models] == ["clean", "from-scratch", "pretrained", "clean-2"]
    assert [m.marked for m in made.models] == [False, True, True, False]
    vk = made.key.verification_key()
    for m in made.models:
        again = verify(m.trained.model, made.key, vk, alpha=m.verification.evidence.alpha)
        assert again.evidence == m.verification.evidence and m.verification.key_id == vk.key_id
        assert m.verification.verified == m.marked  # the marked models learned the key, the clean ones not
    assert [m.trained.result.config.seed for m in made.models] == [5, 6, 7, 8]
    assert (
        made["pretrained"].trained.info.meta["base"] == made["clean"].trained.info.meta
    )  # from the baseline
    assert sum(line.startswith("  ") for line in lines) == 4  # one result line per model


def test_the_key_comes_from_the_seed_and_the_purpose(fashion: ImageDataset) -> None:
    a = derived_key(fashion, size=10, seed=1, purpose="demo")
    b = derived_key(fashion, size=10, seed=1, purpose="demo")
    c = derived_key(fashion, size=10, seed=1, purpose="reproduce")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert a.verification_key().key_id != b.verification_key().key_id  # openings stay fresh
