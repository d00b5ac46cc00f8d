"""Helpers for the tests of served models (the response mark, the attacker's extraction through the API):
small CNNs, random query images, and the fixtures of a served checkpoint and its response key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from backmark.models import ModelInfo, create_model, save_checkpoint
from backmark.response import ResponseKey, generate_response_key

SHAPE = (1, 28, 28)


def cnn(seed: int) -> nn.Module:
    """An untrained CNN: its answers are arbitrary but fixed, all a served model needs to be here."""
    torch.manual_seed(seed)
    return create_model("cnn", num_classes=10, input_shape=SHAPE).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random uint8-valued images as floats in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), generator=g).float() / 255.0


@pytest.fixture(scope="session")
def rkey() -> ResponseKey:
    return generate_response_key(rate="0.05", secret=b"\x07" * 32)


@pytest.fixture(scope="session")
def model() -> nn.Module:
    return cnn(0)


@pytest.fixture(scope="session")
def checkpoint(model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("response-model") / "served.pt"
    return save_checkpoint(path, model, ModelInfo("cnn", {}, SHAPE, 10))
