"""The owner's models, one pipeline for the demo and the attack study: key, clean, marked, verified."""

from __future__ import annotations

import numpy as np
import pytest

from backmark.data import ImageDataset
from backmark.embed import TrainConfig
from backmark.study.owner import OwnerModels, derived_key, owner_models
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


class Stop(Exception):
    """Raised by a stand-in trainer once it has seen what it was given."""


def test_real_image_keys_come_from_the_data_and_no_model_trains_on_them(
    fashion: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = fashion.subset(train=600, test=100, seed=0)
    key = derived_key(data, size=10, seed=1, purpose="demo", kind="heldout")
    again = derived_key(data, size=10, seed=1, purpose="demo", kind="heldout")
    assert key.kind == "heldout" and np.array_equal(key.images, again.images)
    pool = {img.tobytes() for img in data.train_x.numpy()}
    assert all(img.tobytes() in pool for img in key.images)  # real images of the owner's data
    assert not np.array_equal(key.images, derived_key(data, size=10, seed=1, purpose="demo").images)
    seen: list[int] = []

    def clean(given: ImageDataset, **_: object) -> None:
        seen.append(len(given.train_x))
        raise Stop

    monkeypatch.setattr("backmark.study.owner.train_clean", clean)
    with pytest.raises(Stop):
        owner_models(data, key_size=10, purpose="demo", config=TrainConfig(seed=1), pretrained_epochs=1,
                     kind="heldout")  # fmt: skip
    assert seen == [600 - 10]  # the clean baseline never saw the trigger images either
