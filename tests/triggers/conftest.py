"""Fixtures for the trigger tests: the paper's trigger set on disk, and a batch of seeds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

_REL = Path("data") / "adi-trigger-set"


def _shared_candidates() -> list[Path]:
    """Where the shared data folder may be: $BACKMARK_SHARED, next to the repo, /work/shared."""
    found = []
    if os.environ.get("BACKMARK_SHARED"):
        found.append(Path(os.environ["BACKMARK_SHARED"]))
    found.append(Path(__file__).resolve().parents[2] / ".." / "shared")
    found.append(Path("/work/shared"))
    return found


@pytest.fixture(scope="session")
def adi_set() -> Path:
    """The paper's trigger set folder (with ``pics/`` and ``labels.csv``), or skip the test."""
    for shared in _shared_candidates():
        candidate = (shared / _REL).resolve()
        if (candidate / "pics").is_dir():
            return candidate
    pytest.skip("the paper's trigger set (shared/data/adi-trigger-set) is not available here")


@pytest.fixture(scope="session")
def seeds() -> list[bytes]:
    """100 distinct 32-byte seeds."""
    return [hashlib.sha256(b"test-seed-%d" % i).digest() for i in range(100)]
