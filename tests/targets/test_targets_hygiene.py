"""Query hygiene: triggers hidden at random among decoys, only their answers returned."""

from __future__ import annotations

import pytest
import torch

from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.targets import DecoyTarget, check_target, load_decoys


class Recorder:
    """Answers each image with the id written in its first pixel (id / 255); records every batch it sees."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.batches: list[list[int]] = []

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        ids = (images[:, 0, 0, 0] * 255).round().to(torch.int64)
        self.batches += [ids[i : i + self.batch_size].tolist() for i in range(0, len(ids), self.batch_size)]
        return ids


def _ids(first: int, count: int) -> torch.Tensor:
    """uint8 (count, 1, 4, 4) images whose first pixel is first, first + 1, ..."""
    images = torch.randint(
        0, 256, (count, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(first)
    )
    images[:, 0, 0, 0] = torch.arange(first, first + count, dtype=torch.uint8)
    return images


def test_only_trigger_answers_come_back_in_order() -> None:
    triggers, decoys = _ids(0, 20).float() / 255, _ids(100, 120)
    inner = Recorder(batch_size=10)
    hidden = DecoyTarget(inner, decoys, count=80, labels=torch.arange(100, 220) % 2, seed=1)
    assert hidden.predict(triggers).tolist() == list(range(20))
    sent = [i for batch in inner.batches for i in batch]
    assert sorted(sent[i] for i in range(len(sent)) if sent[i] < 20) == list(range(20))
    assert len(sent) == 100 and len(set(sent)) == 100  # no decoy repeats
    assert sent[:20] != list(range(20))  # not triggers first
    mixed = sum(1 for batch in inner.batches if min(batch) < 20 <= max(batch))
    assert mixed >= 6  # nearly every batch of 10 holds both kinds
    assert hidden.last is not None and hidden.last.queries == 100 and hidden.last.decoys == 80
    assert hidden.last.decoy_accuracy == 0.0  # the recorder answers ids >= 100, never 0 or 1


def test_each_call_draws_a_new_order_and_new_decoys() -> None:
    inner = Recorder(batch_size=1000)
    hidden = DecoyTarget(inner, _ids(100, 120), count=30, seed=2)
    hidden.predict(_ids(0, 10).float() / 255)
    hidden.predict(_ids(0, 10).float() / 255)
    first, second = inner.batches
    assert first != second and set(first) != set(second)


def test_bad_decoy_settings_are_refused() -> None:
    with pytest.raises(BackmarkError, match="only 5 images"):
        DecoyTarget(Recorder(4), _ids(0, 5), count=6)
    with pytest.raises(BackmarkError, match="must not be negative"):
        DecoyTarget(Recorder(4), _ids(0, 5), count=-1)
    with pytest.raises(BackmarkError, match=r"decoys are 1x4x4 images but the queries are 1x8x8"):
        DecoyTarget(Recorder(4), _ids(0, 5), count=2).predict(torch.zeros(3, 1, 8, 8))


def test_the_decoys_and_the_wrapped_target_are_checked_without_a_query() -> None:
    class Declares(Recorder):
        def check_fits(self, *, input_shape: tuple[int, int, int], num_classes: int) -> None:
            raise BackmarkError(f"inner check for {input_shape}, {num_classes} classes")

    inner = Declares(4)
    with pytest.raises(BackmarkError, match=r"decoys are 1x4x4 images but the queries are 1x8x8"):
        check_target(DecoyTarget(inner, _ids(0, 5), count=2), input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(BackmarkError, match=r"inner check for \(1, 4, 4\), 10 classes"):
        check_target(DecoyTarget(inner, _ids(0, 5), count=2), input_shape=(1, 4, 4), num_classes=10)
    check_target(DecoyTarget(Recorder(4), _ids(0, 5), count=2), input_shape=(1, 4, 4), num_classes=10)
    assert inner.batches == []


def test_load_decoys_by_shape(fashion: ImageDataset) -> None:
    assert load_decoys(None, input_shape=(1, 28, 28)).input_shape == (1, 28, 28)
    with pytest.raises(BackmarkError, match="pass decoy_data SPEC"):
        load_decoys(None, input_shape=(3, 32, 32))
    with pytest.raises(BackmarkError, match="has 1x28x28 images but the key has 1x32x32"):
        load_decoys("fashion-mnist", input_shape=(1, 32, 32))
