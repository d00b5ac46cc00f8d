"""Reproducible arithmetic building blocks for the abstract images: waves, directions, colour ramps.

Everything here uses only IEEE-754 operations that are correctly rounded on every platform
(``+ - * /``, ``sqrt``, ``floor``, ``abs``, ``min``/``max``) and no reductions whose summation order
could change between numpy versions. ``np.sin`` or ``np.exp`` would be shorter, but their
vectorised implementations differ in the last bit between CPUs and numpy releases, and one flipped
bit can move a pixel across a rounding boundary. So the periodic function is a smoothstep-shaped
cosine look-alike and radial bumps are polynomials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backmark.triggers._common import StableRng


@dataclass(frozen=True)
class Frame:
    """The internal drawing surface of one abstract image.

    ``x`` and ``y`` are (Hs, Ws) float64 coordinate grids of the pixel centres, in units of the
    longer side (so the longer side spans [0, 1] and the composition does not depend on the
    resolution). ``palette`` is (k, C) float64 colours in [0, 1]; ``fmax`` is the highest spatial
    frequency (cycles per unit) that still reads clearly after downsampling to the output size.
    """

    x: np.ndarray
    y: np.ndarray
    width: float
    height: float
    pixels_per_unit: int
    palette: np.ndarray
    fmax: float

    @property
    def channels(self) -> int:
        """Number of colour channels C (1 or 3)."""
        return int(self.palette.shape[1])


def wave(t: np.ndarray | float) -> np.ndarray:
    """A smooth cosine look-alike with period 1 and range [-1, 1]: 1 at t = 0, -1 at t = 0.5."""
    u = np.asarray(t, dtype=np.float64)
    u = u - np.floor(u)
    v = np.abs(2.0 * u - 1.0)
    return 2.0 * v * v * (3.0 - 2.0 * v) - 1.0


def cos_sin(turns: float) -> tuple[float, float]:
    """A unit vector at roughly ``turns`` full turns from the x axis (exactly unit length)."""
    c = float(wave(turns))
    s = float(wave(turns - 0.25))
    norm = math.sqrt(c * c + s * s)
    return c / norm, s / norm


def direction(rng: StableRng) -> tuple[float, float]:
    """A random unit vector (dx, dy)."""
    return cos_sin(rng.random())


def point(rng: StableRng, frame: Frame, margin: float = 0.0) -> tuple[float, float]:
    """A random point in the frame, optionally up to ``margin`` units outside it."""
    return (
        rng.uniform(-margin, frame.width + margin),
        rng.uniform(-margin, frame.height + margin),
    )


def normalise(t: np.ndarray) -> np.ndarray:
    """Rescale an array linearly to [0, 1] (a constant array becomes all zeros)."""
    lo, hi = float(t.min()), float(t.max())
    if hi <= lo:
        return np.zeros_like(t)
    return (t - lo) / (hi - lo)


def distance(frame: Frame, cx: float, cy: float) -> np.ndarray:
    """Euclidean distance of every pixel centre from (cx, cy), shape (Hs, Ws)."""
    dx = frame.x - cx
    dy = frame.y - cy
    return np.sqrt(dx * dx + dy * dy)


def warped(rng: StableRng, frame: Frame, p: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame's coordinates, with probability ``p`` bent by a smooth sinusoidal domain warp.

    Warping turns straight stripes and round rings into organic, marbled shapes.
    """
    if not rng.chance(p):
        return frame.x, frame.y
    dx, dy = direction(rng)
    freq = rng.uniform(0.5, 2.5)
    amp = rng.uniform(0.03, 0.12)
    phase = rng.random()
    bend = amp * wave(freq * (frame.x * dx + frame.y * dy) + phase)
    return frame.x - dy * bend, frame.y + dx * bend


def colours(rng: StableRng, frame: Frame, k: int) -> np.ndarray:
    """``k`` colours for one layer, shape (k, C): mostly from the palette, sometimes fresh."""
    pal = frame.palette
    rows = [pal[rng.integer(0, len(pal) - 1)] for _ in range(k)]
    if rng.chance(0.2):
        rows[rng.integer(0, k - 1)] = random_colour(rng, frame.channels)
    return np.stack(rows)


def ramp(t: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Map ``t`` in [0, 1], (Hs, Ws), piecewise linearly through colours (k, C) to (C, Hs, Ws)."""
    k = len(cols)
    pos = np.clip(t, 0.0, 1.0) * (k - 1)
    idx = np.minimum(np.floor(pos).astype(np.intp), k - 2)
    frac = (pos - idx)[..., None]
    out = cols[idx] + (cols[idx + 1] - cols[idx]) * frac
    return np.moveaxis(out, -1, 0)


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (hue in turns, saturation and value in [0, 1]) as RGB float64 shape (3,)."""
    h6 = (h - math.floor(h)) * 6.0
    sector = min(int(h6), 5)
    f = h6 - sector
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][sector]
    return np.array(rgb, dtype=np.float64)


def random_colour(rng: StableRng, channels: int) -> np.ndarray:
    """One random colour of shape (C,): a grey level, or a fairly saturated RGB colour."""
    if channels == 1:
        return np.array([rng.random()], dtype=np.float64)
    return hsv_to_rgb(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.15, 1.0))


def make_palette(rng: StableRng, channels: int) -> np.ndarray:
    """An image-wide palette (k, C) of 4 to 6 colours following a random colour scheme.

    Greyscale palettes spread their levels over dark, middle and light; colour palettes are
    analogous, complementary, triadic or free, always with one dark and one light entry so that the
    composition spans the whole intensity range.
    """
    k = rng.integer(4, 6)
    if channels == 1:
        levels = [rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)]
        levels += [rng.random() for _ in range(k - 2)]
        return np.array(levels, dtype=np.float64)[:, None]
    base = rng.random()
    scheme = rng.pick(["analogous", "complementary", "triadic", "free"])
    hues: list[float] = []
    for i in range(k):
        if scheme == "analogous":
            hues.append(base + rng.uniform(-0.12, 0.12))
        elif scheme == "complementary":
            hues.append(base + 0.5 * (i % 2) + rng.uniform(-0.05, 0.05))
        elif scheme == "triadic":
            hues.append(base + (i % 3) / 3.0 + rng.uniform(-0.04, 0.04))
        else:
            hues.append(rng.random())
    rows = [hsv_to_rgb(h, rng.uniform(0.4, 1.0), rng.uniform(0.35, 1.0)) for h in hues]
    rows[0] = hsv_to_rgb(hues[0], rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.25))
    rows[1] = hsv_to_rgb(hues[1], rng.uniform(0.0, 0.4), rng.uniform(0.85, 1.0))
    return np.stack(rows)
