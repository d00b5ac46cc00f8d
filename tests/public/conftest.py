"""Keys for the public-verification tests: small, seeded, saved in a key folder of their own."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from backmark.keys import MarkingKey, generate_key, save_key_pair


def seed_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@pytest.fixture(scope="session")
def noise_key() -> MarkingKey:
    return generate_key(num_classes=10, input_shape=(1, 12, 12), size=60, kind="noise", seed=seed_of("noise"))


@pytest.fixture
def key_dir(tmp_path: Path, noise_key: MarkingKey) -> Path:
    save_key_pair(noise_key, tmp_path / "key")
    return tmp_path / "key"
