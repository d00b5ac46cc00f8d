"""The built-in trainer: embedding reaches 100% trigger accuracy on a small real subset."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from backmark.data import ImageDataset
from backmark.embed import TrainConfig, embed_from_scratch, embed_pretrained, train_clean
from backmark.embed.trainer import InMemoryBatches, Schedule, _lr_lambda, random_shift, train
from backmark.keys import generate_key
from backmark.models import create_model
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


def test_random_shift_keeps_shape_and_moves_content() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 14, 14] = 1.0
    y = random_shift(x, 2, gen)
    assert y.shape == x.shape
    assert torch.all(y.sum(dim=(1, 2, 3)) == 1.0)  # a 2-pixel shift keeps the centre pixel inside
    moved = (y[:, 0, 14, 14] == 0).sum()
    assert moved > 40  # 24 of 25 offsets move it


def test_flip_crop_shifts_flips_about_half_and_keeps_labels() -> None:
    # image i has one bright pixel, of value i + 1, left of centre in row 14; its label is i % 10
    n = 200
    images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    images[torch.arange(n), 0, 14, 4] = torch.arange(1, n + 1, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    cols: dict[str, list[int]] = {}
    for augment in ("none", "crop", "flip-crop"):
        batches = InMemoryBatches(
            images, labels, batch_size=64, augment=augment, generator=torch.Generator().manual_seed(1)
        )
        cols[augment] = []
        for x, y in batches:
            assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
            flat = x.flatten(1)
            assert torch.all((flat > 0).sum(dim=1) == 1)  # a 2-pixel shift keeps the pixel inside
            which = (flat.max(dim=1).values * 255).round().long() - 1
            assert torch.equal(y, labels[which])  # each image keeps its own label
            cols[augment] += (flat.argmax(dim=1) % 28).tolist()
    assert set(cols["none"]) == {4}
    assert set(cols["crop"]) == {2, 3, 4, 5, 6}  # shifted by up to 2 pixels, never flipped
    flipped = sum(c > 14 for c in cols["flip-crop"])  # 27 - 4 = 23, shifted: 21..25
    assert set(cols["flip-crop"]) <= {2, 3, 4, 5, 6, 21, 22, 23, 24, 25}
    assert 70 < flipped < 130  # about half of 200


@pytest.mark.parametrize("schedule", ["onecycle", "constant"])
def test_learning_rate_schedules(schedule: Schedule) -> None:
    total = 200
    factor = _lr_lambda(TrainConfig(schedule=schedule), total)
    f = [factor(step) for step in range(total + 1)]
    if schedule == "constant":
        assert f == [1.0] * (total + 1)
        return
    warm = 30  # 15% of the steps
    assert f[0] == pytest.approx(1 / warm) and f[warm - 1] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(f[:warm]))  # linear warm-up
    assert all(a >= b for a, b in itertools.pairwise(f[warm - 1 :]))  # then only down
    assert f[warm + (total - warm) // 2] == pytest.approx(0.5, abs=0.01)  # cosine: half way, half
    assert f[total] == pytest.approx(0.0, abs=1e-9)


def test_the_optimiser_follows_the_schedule(
    fashion_small: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer steps the schedule once per batch: one-cycle peaks at lr and ends near 0."""
    data = fashion_small.subset(train=300, test=100, seed=0)
    seen: list[float] = []
    original = torch.optim.SGD.step

    def spy(self: torch.optim.SGD, *args: Any, **kw: Any) -> Any:
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    lrs: dict[str, list[float]] = {}
    for schedule in ("onecycle", "constant"):
        seen.clear()
        model = create_model("cnn", num_classes=10, input_shape=data.input_shape)
        train(model, (data.train_x, data.train_y), (data.test_x, data.test_y),
              config=TrainConfig(epochs=2, lr=0.05, schedule=schedule), progress=False)  # fmt: skip
        lrs[schedule] = list(seen)
    assert len(lrs["onecycle"]) == len(lrs["constant"]) == 6  # 2 epochs of 3 batches
    assert lrs["constant"] == [0.05] * 6
    assert max(lrs["onecycle"]) == pytest.approx(0.05) and lrs["onecycle"][-1] < 0.05 * 0.2
