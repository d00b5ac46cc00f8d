"""Fixtures for the attack tests: a tiny CNN and a small synthetic attacker dataset (no download needed)."""

from __future__ import annotations

import pytest
from attack_helpers import synthetic_data, tiny_cnn
from torch import nn

from backmark.attacks import AttackData


@pytest.fixture
def model() -> nn.Module:
    return tiny_cnn()


@pytest.fixture(scope="session")
def data() -> AttackData:
    return synthetic_data()
