"""The ``abstract`` trigger kind: procedurally generated abstract art, one image per seed.

Adi et al. (2018) used 100 abstract photographs as their trigger set: inputs far from any
training class, so giving them random labels costs little accuracy, yet the labels stay in the
model as a watermark. Here such images are generated from a seed instead of taken from a folder,
so a trigger set of any size can be regenerated from the secret key alone.

An image is a stack of 3 to 6 layers (the top one always a clear motif, never a plain gradient)
drawn from a varied vocabulary (gradients, stripes, checkerboards, plasma interference, concentric
rings, soft blobs, polygons, ellipses and lines; see :mod:`backmark.triggers._layers`) in an
image-wide colour palette, blended with normal, multiply, screen or difference modes,
contrast-stretched to the full 0..255 range, then area averaged down from an internal resolution
of at least 96 pixels so that small outputs stay crisp but smooth. Positions and sizes are in units
of the image's longer side, so one seed gives a similar composition at every resolution (stripe
and ring frequencies are capped by the output size, so small images get coarser patterns).
"""

from __future__ import annotations

import numpy as np

from backmark.triggers._common import StableRng, check_shape
from backmark.triggers._fields import Frame, make_palette
from backmark.triggers._layers import BACKGROUNDS, MOTIFS, OVERLAYS
from backmark.triggers.registry import register_generated_kind

_DOMAIN = b"backmark/trigger/abstract"
MIN_SIDE = 8
"""Smallest supported height or width, in pixels."""
_RENDER_SIDE = 96
"""The internal rendering resolution's longer side is at least this many pixels."""
_MAX_SCALE = 8
_SUBLEVELS = 16
"""Pixel values are kept in 1/16 grey levels until the final integer area average."""
_BLEND_MODES = (("normal", 6.0), ("multiply", 1.5), ("screen", 1.5), ("difference", 1.0))


def render_scale(height: int, width: int) -> int:
    """The integer supersampling factor: internal size = factor * output size (2 to 8)."""
    longer = max(height, width)
    return int(min(_MAX_SCALE, max(2, -(-_RENDER_SIDE // longer))))


@register_generated_kind("abstract", description="procedural abstract art from each trigger's seed (default)")
def abstract_image(seed: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """A procedurally generated abstract image, uint8 of shape ``(C, H, W)`` in 0..255.

    A pure function of ``(seed, shape)``: same inputs give byte-identical output, independent of
    the numpy version and the CPU (only correctly rounded float operations, the raw ``PCG64``
    stream and integer PIL polygon/line rasterisation are used). ``C`` is 1 (a greyscale
    composition) or 3 (colour); ``H`` and ``W`` must be at least 8. Raises ``BackmarkError`` for
    any other shape, or for a seed that is not bytes.
    """
    c, h, w = check_shape(shape, min_side=MIN_SIDE)
    rng = StableRng(_DOMAIN, seed)
    scale = render_scale(h, w)
    hs, ws = h * scale, w * scale
    ppu = max(hs, ws)
    xs = (np.arange(ws, dtype=np.float64) + 0.5) / ppu
    ys = (np.arange(hs, dtype=np.float64) + 0.5) / ppu
    frame = Frame(
        x=np.broadcast_to(xs[None, :], (hs, ws)),
        y=np.broadcast_to(ys[:, None], (hs, ws)),
        width=ws / ppu,
        height=hs / ppu,
        pixels_per_unit=ppu,
        palette=make_palette(rng, c),
        fmax=max(2.0, min(10.0, max(h, w) / 5.5)),
    )
    background = BACKGROUNDS[rng.weighted([weight for _, weight in BACKGROUNDS])][0]
    canvas, _ = background(rng, frame, True)
    count = rng.integer(2, 5)
    for index in range(count):
        top = index == count - 1
        vocabulary = MOTIFS if top else OVERLAYS
        layer = vocabulary[rng.weighted([weight for _, weight in vocabulary])][0]
        field, alpha = layer(rng, frame, False)
        mode = _BLEND_MODES[rng.weighted([weight for _, weight in _BLEND_MODES])][0]
        opacity = rng.uniform(0.75, 1.0) if top else rng.uniform(0.45, 1.0)
        canvas = _blend(canvas, field, alpha * opacity, mode)
    return _finish(canvas, scale)


def _blend(canvas: np.ndarray, field: np.ndarray, alpha: np.ndarray, mode: str) -> np.ndarray:
    """Composite ``field`` (C, Hs, Ws) over ``canvas`` with coverage ``alpha`` (Hs, Ws)."""
    if mode == "multiply":
        top = canvas * field
    elif mode == "screen":
        top = 1.0 - (1.0 - canvas) * (1.0 - field)
    elif mode == "difference":
        top = np.abs(canvas - field)
    else:
        top = field
    blended: np.ndarray = canvas + (top - canvas) * alpha[None, :, :]
    return blended


def _finish(canvas: np.ndarray, scale: int) -> np.ndarray:
    """Stretch (C, Hs, Ws) floats to the full range and area-average by ``scale`` to uint8.

    The stretch maps the 0.5th and 99.5th percentiles (exact sample values, all channels pooled so
    hues are kept) to 0 and 1. The downsampling works on integers, so it is exact.
    """
    flat = canvas.reshape(-1)
    lo = float(np.quantile(flat, 0.005, method="lower"))
    hi = float(np.quantile(flat, 0.995, method="higher"))
    if hi - lo > 1e-3:
        canvas = np.clip((canvas - lo) / (hi - lo), 0.0, 1.0)
    levels = np.floor(np.clip(canvas, 0.0, 1.0) * (255.0 * _SUBLEVELS) + 0.5).astype(np.int64)
    c, hs, ws = levels.shape
    blocks: np.ndarray = levels.reshape(c, hs // scale, scale, ws // scale, scale).sum(axis=(2, 4))
    div = _SUBLEVELS * scale * scale
    return ((blocks + div // 2) // div).astype(np.uint8)
