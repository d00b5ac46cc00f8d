"""Traitor tracing with real models: three licensee copies of one base model, one key each."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch
from torch import nn

from backmark.data import ImageDataset
from backmark.embed import PRETRAINED_CONFIG, TrainConfig, embed_pretrained, train_clean
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, VerificationKey, generate_key
from backmark.verify.trace import trace

Keys = list[tuple[str, MarkingKey, VerificationKey]]


@pytest.fixture(scope="module")
def licensees(fashion_small: ImageDataset) -> tuple[nn.Module, Keys, dict[str, nn.Module]]:
    torch.manual_seed(0)
    base = train_clean(fashion_small, config=TrainConfig(epochs=2), progress=False)
    keys: Keys = []
    copies = {}
    for name in ("acme", "globex", "initech"):
        mk = generate_key(
            num_classes=10,
            input_shape=(1, 28, 28),
            size=50,
            kind="abstract",
            seed=hashlib.sha256(name.encode()).digest(),
        )
        keys.append((name, mk, mk.verification_key()))
        config = dataclasses.replace(PRETRAINED_CONFIG, epochs=4)
        copies[name] = embed_pretrained(
            base.model, base.info, fashion_small, mk, config=config, progress=False
        ).model
    return base.model, keys, copies


def test_each_copy_names_its_licensee_and_the_base_model_none(
    licensees: tuple[nn.Module, Keys, dict[str, nn.Module]],
) -> None:
    base, keys, copies = licensees
    for name, copy in copies.items():
        result = trace(copy, keys, seed=1)
        assert result.named == name, result.to_dict()
        assert [o.name for o in result.verified] == [name]
        assert result.queries == 150
        mine = next(o for o in result.outcomes if o.name == name)
        assert mine.evidence.alpha == pytest.approx(1e-6 / 6)  # 3 keys, 2 tests each (either)
        assert mine.p_value_corrected == pytest.approx(min(1.0, 6 * mine.p_value))
        # the label-free test from the same answers, beside each key, at the same corrected level
        assert mine.label_free is not None and mine.label_free.verified
        assert mine.label_free.alpha == mine.evidence.alpha
        assert mine.to_dict()["evidence"]["label-free"]["hits"] == mine.label_free.matches
    nobody = trace(base, keys)
    assert nobody.named is None and not nobody.verified


def test_keys_are_checked_before_anything_is_sent(
    licensees: tuple[nn.Module, Keys, dict[str, nn.Module]],
) -> None:
    base, keys, _ = licensees
    with pytest.raises(BackmarkError, match="same name"):
        trace(base, [keys[0], keys[0]])
    other = generate_key(num_classes=7, input_shape=(1, 28, 28), size=10, kind="noise")
    with pytest.raises(BackmarkError, match="one model only"):
        trace(base, [*keys, ("other", other, other.verification_key())])
    name, mk, _ = keys[0]
    with pytest.raises(BackmarkError, match=r"does not open|do not match"):
        trace(base, [(name, mk, keys[1][2])])
    with pytest.raises(BackmarkError, match="at least one key"):
        trace(base, [])
