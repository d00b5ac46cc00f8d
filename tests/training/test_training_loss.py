"""The pluggable loss of the training step: soft targets travel with their images, a loss can be swapped."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backmark.training import DeviceBatches, Triggers, cross_entropy, run_epochs


def _data(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i holds the value i in one pixel; its soft target puts i / (n - 1) on class 1."""
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    share = torch.arange(n, dtype=torch.float32) / (n - 1)
    return images, torch.stack([1 - share, share], dim=1)


def test_soft_targets_are_batched_with_their_images() -> None:
    images, soft = _data()
    batches = DeviceBatches(images, soft.double(), batch_size=16, generator=torch.Generator().manual_seed(0))
    seen = 0
    for x, y, _ in batches:
        assert y.dtype == torch.float32 and y.shape == (len(x), 2)
        which = (x[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(y, soft[which])  # each image with its own target, in the shuffled order
        seen += len(x)
    assert seen == 60


def test_soft_targets_refuse_triggers_and_a_wrong_shape() -> None:
    images, soft = _data()
    triggers = Triggers(images[:2], torch.zeros(2), per_batch=1, seed=0, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="soft targets"):
        DeviceBatches(images, soft, batch_size=16, generator=gen, triggers=triggers)
    with pytest.raises(ValueError, match="soft targets"):
        DeviceBatches(images, soft[:, 0], batch_size=16, generator=gen)


def test_the_default_loss_is_cross_entropy_and_another_can_be_plugged_in() -> None:
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    assert torch.allclose(cross_entropy(logits, labels), F.cross_entropy(logits, labels))
    images, soft = _data()
    calls: list[torch.Size] = []

    def soft_loss(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(targets.shape)
        return cross_entropy(out, targets)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    batches = DeviceBatches(images, soft, batch_size=20, generator=torch.Generator().manual_seed(0))
    run_epochs(
        model, batches, len(batches), epochs=200, lr=0.5, schedule="constant",
        memory_format=torch.contiguous_format, weight_decay=0.0, loss=soft_loss,
    )  # fmt: skip
    assert calls[0] == (20, 2) and len(calls) == 600
    with torch.no_grad():  # it learned the soft targets themselves, not just their argmax
        probs = model(images.float() / 255).softmax(1)[:, 1]
    assert (probs - soft[:, 1]).abs().max() < 0.1
