"""Fixtures for the key tests: small keys made fast, and the paper's trigger photographs if present."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from backmark.keys import MarkingKey, generate_key

_REL = Path("data") / "adi-trigger-set" / "pics"


def seed_of(text: str) -> bytes:
    """A fixed 32-byte master seed named by ``text``."""
    return hashlib.sha256(text.encode()).digest()


@pytest.fixture(scope="session")
def adi_pics() -> Path:
    """The folder of the paper's 100 trigger photographs, or skip the test."""
    roots = []
    if os.environ.get("BACKMARK_SHARED"):
        roots.append(Path(os.environ["BACKMARK_SHARED"]))
    roots += [Path(__file__).resolve().parents[2] / ".." / "shared", Path("/work/shared")]
    for root in roots:
        candidate = (root / _REL).resolve()
        if candidate.is_dir():
            return candidate
    pytest.skip("the paper's trigger set (shared/data/adi-trigger-set/pics) is not available here")


@pytest.fixture
def small_key() -> MarkingKey:
    """A 6-trigger noise key for a 10-class 1x8x8 model (a fresh key each test)."""
    return generate_key(num_classes=10, input_shape=(1, 8, 8), size=6, kind="noise", seed=seed_of("small"))


@pytest.fixture(scope="session")
def rgb_key() -> MarkingKey:
    """A 20-trigger abstract key for a 10-class 3x16x16 model (shared: do not mutate)."""
    return generate_key(num_classes=10, input_shape=(3, 16, 16), size=20, seed=seed_of("rgb"))
