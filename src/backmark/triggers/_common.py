"""Shared helpers for the trigger generators: shape checks and a version-stable random source.

Trigger images are part of a watermark key, so regenerating them from a seed must give the same
bytes years later on another machine. numpy promises a stable *bit stream* for ``PCG64`` (and a
stable ``SeedSequence``), but not stable outputs of ``Generator`` methods such as ``uniform`` or
``integers``, whose algorithms may change between numpy versions. :class:`StableRng` therefore
derives every number it hands out from the raw 64-bit words of ``PCG64`` with fixed arithmetic.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence

import numpy as np

from backmark.errors import BackmarkError

Shape = tuple[int, int, int]
"""Image shape ``(C, H, W)``: channels (1 or 3), height and width in pixels."""


def check_shape(shape: Sequence[int], *, min_side: int = 1) -> Shape:
    """Validate a ``(C, H, W)`` shape and return it as a tuple of plain ints.

    ``C`` must be 1 (greyscale) or 3 (RGB); ``H`` and ``W`` must be at least ``min_side`` pixels.
    """
    try:
        c, h, w = (operator.index(v) for v in shape)
        ok = not any(isinstance(v, bool) for v in shape)
    except (TypeError, ValueError):
        c = h = w = 0
        ok = False
    if not ok or c not in (1, 3) or h < min_side or w < min_side:
        raise BackmarkError(
            f"bad image shape {shape!r}: expected (C, H, W) with C in {{1, 3}} and "
            f"H, W >= {min_side}, e.g. (3, 32, 32)"
        )
    return (c, h, w)


def check_seed(seed: bytes) -> bytes:
    """Return ``seed`` as ``bytes``; reject other types (a str seed is a likely mix-up with hex)."""
    if not isinstance(seed, bytes | bytearray | memoryview):
        raise BackmarkError(
            f"trigger seed must be bytes, got {type(seed).__name__}; pass e.g. bytes.fromhex(...)"
        )
    return bytes(seed)


class StableRng:
    """Random numbers that depend only on the seed, not on the numpy version or the platform.

    Built on ``PCG64.random_raw`` (a stable 64-bit stream); floats are the top 53 bits of a word
    scaled by 2**-53, which is exact in IEEE double arithmetic.
    """

    def __init__(self, domain: bytes, seed: bytes) -> None:
        digest = hashlib.sha256(domain + check_seed(seed)).digest()
        self._bits = np.random.PCG64(int.from_bytes(digest, "big"))

    def words(self, n: int) -> np.ndarray:
        """``n`` raw 64-bit words, uint64 array of shape (n,)."""
        return np.asarray(self._bits.random_raw(n), dtype=np.uint64)

    def random(self) -> float:
        """One float uniform in [0, 1)."""
        return int(self.words(1)[0] >> np.uint64(11)) * 2.0**-53

    def uniform(self, low: float, high: float) -> float:
        """One float uniform in [low, high)."""
        return low + (high - low) * self.random()

    def integer(self, low: int, high: int) -> int:
        """One int uniform in [low, high] (inclusive); the modulo bias is below 2**-50."""
        return low + int(self.words(1)[0]) % (high - low + 1)

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.random() < p

    def pick(self, options: Sequence[str]) -> str:
        """One element of ``options``, uniformly."""
        return options[self.integer(0, len(options) - 1)]

    def weighted(self, weights: Sequence[float]) -> int:
        """An index into ``weights``, drawn with probability proportional to its weight."""
        target = self.random() * sum(weights)
        for i, weight in enumerate(weights):
            target -= weight
            if target < 0:
                return i
        return len(weights) - 1
