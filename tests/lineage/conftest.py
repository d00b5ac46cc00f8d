"""Tiny models for the lineage tests: an owner, copies derived from it, and independent models.

Width-8 CNNs (8, 16 and 32 hidden units) trained a few SGD steps on generated images: enough for the
weights to move, and the whole file takes seconds.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from backmark.models import create_model

SHAPE = (1, 28, 28)


def tiny(seed: int, *, width: int = 8, hidden: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn", num_classes=10, input_shape=SHAPE, width=width, hidden=hidden)


def fit(model: nn.Module, *, seed: int, steps: int = 15, lr: float = 0.05) -> nn.Module:
    """``steps`` of SGD on generated images (seeded): a new model, the given one unchanged."""
    model = copy.deepcopy(model).train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        x = torch.rand(32, *SHAPE, generator=gen)
        y = torch.randint(10, (32,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def owner() -> nn.Module:
    return fit(tiny(1), seed=100)


@pytest.fixture(scope="session")
def independent() -> list[nn.Module]:
    return [fit(tiny(seed), seed=200 + seed) for seed in (2, 3, 4)]
