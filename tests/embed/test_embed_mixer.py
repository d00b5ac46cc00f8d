"""TriggerLoader: the opacus-style wrapper that mixes triggers into the user's own batches."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from backmark.embed import mark_loader
from backmark.errors import BackmarkError
from backmark.keys import generate_key

KEY = generate_key(num_classes=10, input_shape=(1, 28, 28), size=20, kind="noise", seed=b"\x01" * 32)


def _loader(n: int = 400, batch: int = 40) -> DataLoader[tuple[torch.Tensor, ...]]:
    x = torch.rand(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def _fingerprint(image: torch.Tensor) -> str:
    return hashlib.sha256((image * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()


def test_each_batch_gets_k_triggers_with_their_key_labels() -> None:
    wrapped = mark_loader(_loader(), KEY, per_batch=2, seed=0)
    assert len(wrapped) == 10
    images, labels = KEY.trigger_tensors()
    by_print = {_fingerprint(img): int(lab) for img, lab in zip(images, labels, strict=True)}
    seen: Counter[str] = Counter()
    for x, y in wrapped:
        assert x.shape == (42, 1, 28, 28) and y.shape == (42,)
        for img, lab in zip(x[40:], y[40:], strict=True):
            fp = _fingerprint(img)
            assert by_print[fp] == int(lab)
            seen[fp] += 1
    # 10 batches x 2 = 20 = one full pass over the 20 triggers: each exactly once
    assert sorted(seen.values()) == [1] * 20


def test_clean_part_of_the_batch_is_untouched() -> None:
    loader = _loader()
    wrapped = mark_loader(loader, KEY, per_batch=3, seed=1)
    for (x0, y0), (x1, y1) in zip(loader, wrapped, strict=True):
        assert torch.equal(x1[:40], x0) and torch.equal(y1[:40], y0)


def test_transform_is_applied_to_triggers_only() -> None:
    wrapped = mark_loader(_loader(), KEY, per_batch=2, transform=lambda t: t * 0 - 7.0, seed=0)
    x, _ = next(iter(wrapped))
    assert torch.all(x[40:] == -7.0)
    assert x[:40].min() >= 0.0


def test_seed_makes_the_trigger_order_reproducible() -> None:
    a = [y[-2:].tolist() for _, y in mark_loader(_loader(), KEY, seed=5)]
    b = [y[-2:].tolist() for _, y in mark_loader(_loader(), KEY, seed=5)]
    assert a == b


def test_shape_mismatch_is_a_clear_error() -> None:
    loader = [(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.int64))]
    with pytest.raises(BackmarkError, match="make the key with the model's input shape"):
        list(mark_loader(loader, KEY))


def test_per_batch_must_be_positive() -> None:
    with pytest.raises(BackmarkError):
        mark_loader(_loader(), KEY, per_batch=0)


def test_default_is_a_tenth_of_the_loaders_batch() -> None:
    # 10% of the batch (at least 2), measured in benchmarks/own_loop.py: the paper's 2 per 100 left
    # 53 of 100 triggers unlearned after 3 epochs of a user's loop
    x, y = next(iter(mark_loader(_loader(batch=40), KEY, seed=0)))
    assert x.shape == (44, 1, 28, 28) and y.shape == (44,)
    x, _ = next(iter(mark_loader(_loader(batch=100), KEY, seed=0)))
    assert len(x) == 110
    x, _ = next(iter(mark_loader([(torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.int64))], KEY)))
    assert len(x) == 18  # a loader without batch_size: 10 triggers, as for a batch of 100
