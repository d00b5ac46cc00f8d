"""An integer seed turned into the 32-byte master seed of a key.

Seeded runs (``keygen --seed``, the reproduction's keys, an attacker's own key) make reproducible keys;
each use has its own tag, so one integer gives unrelated keys to different uses. A key made this way is
not secret: anyone who knows the tag and the integer makes it again.
"""

from __future__ import annotations

import hashlib


def key_seed(tag: str, seed: int) -> bytes:
    """SHA-256 of ``tag`` followed by ``seed`` in decimal: the master seed for use ``tag``."""
    return hashlib.sha256(f"{tag}{seed}".encode()).digest()


__all__ = ["key_seed"]
