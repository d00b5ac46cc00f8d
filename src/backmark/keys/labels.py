"""Deterministic per-item seeds and unbiased uniform labels derived from a secret master seed.

A key is a pure function of its 32-byte master seed (plus, for ``folder`` keys, the user's images), so it
can be regenerated and audited. Labels are drawn by rejection sampling from SHA-256 output: ``x % C`` on a
range that is not a multiple of C would make some labels likelier than others and break the exact
binomial null hypothesis of the verification.
"""

from __future__ import annotations

import hashlib

SEED_BYTES = 32
_ITEM_TAG = b"backmark/v1/item-seed"
_LABEL_TAG = b"backmark/v1/label"


def item_seed(master_seed: bytes, index: int) -> bytes:
    """The 32-byte seed of trigger ``index``: SHA-256 over a tag, the master seed and the index."""
    return hashlib.sha256(_ITEM_TAG + master_seed + index.to_bytes(8, "big")).digest()


def uniform_label(seed: bytes, num_classes: int) -> int:
    """A label uniform on 0..num_classes-1, exactly, from ``seed`` (rejection sampling on 64 bits)."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    limit = (2**64 // num_classes) * num_classes
    counter = 0
    while True:
        block = hashlib.sha256(_LABEL_TAG + seed + counter.to_bytes(8, "big")).digest()
        for start in range(0, 32, 8):
            value = int.from_bytes(block[start : start + 8], "big")
            if value < limit:
                return value % num_classes
        counter += 1
