"""The ``noise`` trigger kind: images of independent uniformly random pixels.

Noise triggers are the simplest out-of-distribution inputs: every pixel of every channel is an
independent uniform draw from 0..255, derived from the seed. They are easy to embed but also easy
to tell apart from natural images, which is why ``abstract`` is the default kind.
"""

from __future__ import annotations

import numpy as np

from backmark.triggers._common import StableRng, check_shape
from backmark.triggers.registry import register_generated_kind

_DOMAIN = b"backmark/trigger/noise"


@register_generated_kind("noise", description="uniformly random pixels from each trigger's seed")
def noise_image(seed: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """A uint8 image of shape ``(C, H, W)`` whose pixels are uniform on 0..255.

    A pure function of ``(seed, shape)``: the bytes are the leading ``C*H*W`` bytes of the raw
    64-bit ``PCG64`` stream (read little-endian), so they do not depend on the numpy version or the
    machine. Images of different shapes from one seed share a prefix of that byte stream.
    """
    c, h, w = check_shape(shape)
    n = c * h * w
    rng = StableRng(_DOMAIN, seed)
    words = rng.words((n + 7) // 8).astype("<u8")
    pixels = np.frombuffer(words.tobytes(), dtype=np.uint8)[:n]
    return pixels.reshape(c, h, w).copy()
