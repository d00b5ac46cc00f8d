"""Preparing probes and deciding a suspect: each distinct image asked once, the counts as over every draw."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backmark.contrast import decide, draw_probes, prepare, probe_pool, probe_test
from backmark.data.dataset import ImageDataset
from backmark.errors import BackmarkError

NONCE = bytes(range(32))


class Counting(nn.Module):
    """A fixed 3-class model of the mean pixel (its weights set the answer) that counts the images it saw."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.head = nn.Linear(2, 3)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(3, 2, generator=gen) * 4)
            self.head.bias.copy_(torch.randn(3, generator=gen))
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        m = x.flatten(1).mean(1, keepdim=True)
        return self.head(torch.cat([m, m * m], 1))


def _pool(n: int = 40) -> torch.Tensor:
    return torch.stack([torch.full((1, 4, 4), 6 * v, dtype=torch.uint8) for v in range(n)])


def test_a_suspect_is_asked_each_distinct_probe_image_once() -> None:
    pool = _pool()
    deployed, siblings, suspect = Counting(0), [Counting(1), Counting(2)], Counting(3)
    prepared = prepare(deployed, siblings, pool=pool, nonce=NONCE, num_classes=3, probes=2000)
    assert deployed.seen == len(pool)  # 2000 draws from 40 images
    result = decide(suspect, prepared, delta=0.0, alpha=0.01)
    assert suspect.seen == len(pool) and result.queries == len(pool)
    # the same counts as asking every draw
    images = draw_probes(pool, kind="natural", count=2000, nonce=NONCE).float().div(255)
    with torch.no_grad():
        every = [m(images).argmax(1) for m in (deployed, *siblings, suspect)]
    expected = probe_test(every[0], torch.stack(every[1:3]), every[3], delta=0.0)
    assert result.probe == expected
    assert result.probe_figures()["queries"] == len(pool)


def test_the_probe_pool_is_the_test_split_or_every_image() -> None:
    x = _pool(10)
    data = ImageDataset(
        "toy", x[:7], torch.zeros(7, dtype=torch.int64), x[7:], torch.zeros(3, dtype=torch.int64), ("a",)
    )
    assert torch.equal(probe_pool(data), x[7:])
    assert torch.equal(probe_pool(data, "all"), x)
    with pytest.raises(BackmarkError, match="probe pool must be one of test, all"):
        probe_pool(data, "train")
