"""Fixtures for the response mark: a fixed key, an untrained CNN served with it, random query images."""

from __future__ import annotations

from pathlib import Path

import pytest
from response_helpers import SHAPE, cnn
from torch import nn

from backmark.models import ModelInfo, save_checkpoint
from backmark.response import ResponseKey, generate_response_key


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
