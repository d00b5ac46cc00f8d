"""The built-in trainer: embedding reaches 100% trigger accuracy on a small real subset."""

from __future__ import annotations

import torch

from backmark.data import ImageDataset
from backmark.embed import TrainConfig, embed_from_scratch, embed_pretrained, train_clean
from backmark.keys import generate_key
from backmark.verify import verify


def _key(data: ImageDataset, size: int = 20):  # type: ignore[no-untyped-def]
    return generate_key(
        num_classes=data.num_classes, input_shape=data.input_shape, size=size, seed=b"\x07" * 32
    )


def test_from_scratch_learns_every_trigger_and_verifies(fashion_small: ImageDataset) -> None:
    key = _key(fashion_small)
    config = TrainConfig(epochs=3, triggers_per_batch=8, seed=0)
    trained = embed_from_scratch(fashion_small, key, config=config, progress=False)
    assert trained.result.trigger_acc == 1.0
    assert trained.result.test_acc > 0.75  # 4000 images, 3 epochs
    result = verify(trained.model, key, key.verification_key())
    assert result.verified and result.evidence.matches == key.n
    assert trained.info.meta["key_id"] == key.verification_key().key_id
    assert len(trained.result.history) == 3


def test_clean_model_does_not_verify_and_pretrained_does(fashion_small: ImageDataset) -> None:
    key = _key(fashion_small)
    clean = train_clean(fashion_small, config=TrainConfig(epochs=2, seed=1), progress=False)
    vk = key.verification_key()
    assert not verify(clean.model, key, vk).verified
    before = {k: v.clone() for k, v in clean.model.state_dict().items()}
    marked = embed_pretrained(
        clean.model,
        clean.info,
        fashion_small,
        key,
        config=TrainConfig(epochs=6, lr=0.01, schedule="constant", triggers_per_batch=8),
        progress=False,
    )
    # the input model is left as it was
    after = clean.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert marked.result.trigger_acc == 1.0
    assert verify(marked.model, key, vk).verified
    assert marked.info.meta["mode"] == "pretrained"
    assert marked.info.meta["test_acc_before"] > 0.6
