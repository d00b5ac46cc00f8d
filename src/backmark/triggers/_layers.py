"""The layer vocabulary of abstract trigger images.

Each layer function draws one motif on the frame and returns ``(field, alpha)``: ``field`` is a
(C, Hs, Ws) float64 colour image in [0, 1] and ``alpha`` an (Hs, Ws) coverage in [0, 1]. With
``full=True`` the motif covers the frame (alpha 1, usable as a background); otherwise it is an
overlay whose transparent parts let the layers below show through.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from backmark.triggers._common import StableRng
from backmark.triggers._fields import (
    Frame,
    colours,
    cos_sin,
    direction,
    distance,
    normalise,
    point,
    ramp,
    warped,
    wave,
)

Layer = tuple[np.ndarray, np.ndarray]
LayerFn = Callable[[StableRng, Frame, bool], Layer]


def _ones(frame: Frame) -> np.ndarray:
    return np.ones_like(frame.x)


def _overlay(frame: Frame, cols: np.ndarray, mask: np.ndarray) -> Layer:
    """A single-colour overlay: colour ``cols[0]`` wherever ``mask`` (in [0, 1]) is high."""
    field = np.broadcast_to(cols[0][:, None, None], (frame.channels, *frame.x.shape))
    return np.array(field), mask


def _sharpen(t: np.ndarray, rng: StableRng) -> np.ndarray:
    """Map a wave in [-1, 1] to [0, 1], from soft (sinusoidal) to hard-edged (square)."""
    hardness = 1.0 if rng.chance(0.4) else rng.uniform(2.0, 12.0)
    return np.clip(t * hardness, -1.0, 1.0) * 0.5 + 0.5


def solid(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """A flat colour (a background, or a tint over everything when used as an overlay)."""
    cols = colours(rng, frame, 1)
    return _overlay(frame, cols, _ones(frame))


def linear_gradient(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """A smooth gradient through 2 to 3 colours along a random direction."""
    dx, dy = direction(rng)
    cols = colours(rng, frame, rng.integer(2, 3))
    t = normalise(frame.x * dx + frame.y * dy)
    return ramp(t, cols), (_ones(frame) if full else t)


def radial_gradient(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """Colours radiating from a random centre; as an overlay, a glow that fades outwards."""
    cx, cy = point(rng, frame, 0.2)
    radius = rng.uniform(0.3, 1.2)
    cols = colours(rng, frame, rng.integer(2, 3))
    t = np.minimum(distance(frame, cx, cy) / radius, 1.0)
    return ramp(t, cols), (_ones(frame) if full else 1.0 - t * t)


def stripes(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """Parallel stripes at a random angle and frequency, soft or hard-edged, maybe warped."""
    x, y = warped(rng, frame, 0.35)
    dx, dy = direction(rng)
    freq = rng.uniform(1.5, frame.fmax)
    t = _sharpen(wave(freq * (x * dx + y * dy) + rng.random()), rng)
    cols = colours(rng, frame, 2)
    return (ramp(t, cols), _ones(frame)) if full else _overlay(frame, cols, t)


def checkerboard(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """A checkerboard, possibly rotated, with square cells of random size."""
    dx, dy = direction(rng) if rng.chance(0.6) else (1.0, 0.0)
    freq = rng.uniform(1.5, max(2.0, frame.fmax / 2.0))
    u = np.floor(freq * (frame.x * dx + frame.y * dy) + rng.random())
    v = np.floor(freq * (frame.y * dx - frame.x * dy) + rng.random())
    parity = np.abs(u + v) % 2.0
    cols = colours(rng, frame, 2)
    return (ramp(parity, cols), _ones(frame)) if full else _overlay(frame, cols, parity)


def plasma(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """Interference of several planar and circular waves, mapped through a colour ramp."""
    x, y = warped(rng, frame, 0.3)
    total = np.zeros_like(x)
    count = rng.integer(2, 5)
    for _ in range(count):
        freq = rng.uniform(0.6, frame.fmax / 3.0)
        if rng.chance(0.5):
            dx, dy = direction(rng)
            total += wave(freq * (x * dx + y * dy) + rng.random())
        else:
            cx, cy = point(rng, frame, 0.5)
            ddx, ddy = x - cx, y - cy
            total += wave(freq * np.sqrt(ddx * ddx + ddy * ddy) + rng.random())
    t = normalise(total)
    if rng.chance(0.4):
        t = wave(t * rng.uniform(1.0, 2.0)) * 0.5 + 0.5
    cols = colours(rng, frame, rng.integer(3, 5))
    return ramp(t, cols), (_ones(frame) if full else np.clip(2.0 * t - 0.5, 0.0, 1.0))


def rings(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """Concentric rings around a random centre; as an overlay, fading out at a random radius."""
    x, y = warped(rng, frame, 0.3)
    cx, cy = point(rng, frame, 0.3)
    ddx, ddy = x - cx, y - cy
    r = np.sqrt(ddx * ddx + ddy * ddy)
    t = _sharpen(wave(rng.uniform(2.0, frame.fmax) * r + rng.random()), rng)
    cols = colours(rng, frame, 2)
    if full:
        return ramp(t, cols), _ones(frame)
    fade = np.clip(1.0 - r / rng.uniform(0.3, 1.0), 0.0, 1.0)
    return _overlay(frame, cols, t * np.minimum(1.0, 3.0 * fade))


def blobs(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """A few soft, blurred-looking round blobs of different colours and sizes."""
    premult = np.zeros((frame.channels, *frame.x.shape))
    alpha = np.zeros_like(frame.x)
    for _ in range(rng.integer(2, 6)):
        cx, cy = point(rng, frame, 0.1)
        radius = rng.uniform(0.1, 0.45)
        d = distance(frame, cx, cy) / radius
        q = np.clip(1.0 - d * d, 0.0, 1.0)
        m = q * q * rng.uniform(0.6, 1.0)
        col = colours(rng, frame, 1)[0][:, None, None]
        premult = col * m + premult * (1.0 - m)
        alpha = m + alpha * (1.0 - m)
    field = premult / np.maximum(alpha, 1e-9)
    return field, (_ones(frame) if full else alpha)


def shapes(rng: StableRng, frame: Frame, full: bool) -> Layer:
    """Random polygons, stars, rotated ellipses and thick lines, filled or outlined (PIL)."""
    h, w = frame.x.shape
    ppu = frame.pixels_per_unit
    premult = np.zeros((frame.channels, h, w))
    alpha = np.zeros((h, w))
    for _ in range(rng.integer(2, 7)):
        mask = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask)
        kind = rng.pick(["polygon", "star", "ellipse", "line", "zigzag"])
        cx, cy = point(rng, frame, 0.1)
        size = rng.uniform(0.1, 0.5)
        stroke = max(1, round(rng.uniform(0.01, 0.06) * ppu))
        if kind in ("line", "zigzag"):
            pts = [point(rng, frame, 0.1) for _ in range(2 if kind == "line" else rng.integer(3, 6))]
            xy = [(round(px * ppu), round(py * ppu)) for px, py in pts]
            draw.line(xy, fill=255, width=stroke, joint="curve")
        else:
            n = {"polygon": rng.integer(3, 7), "star": 2 * rng.integer(4, 8), "ellipse": 48}[kind]
            tilt, stretch = rng.random(), rng.uniform(0.3, 1.0)
            ax, ay = cos_sin(tilt)
            xy = []
            for i in range(n):
                turn = (i + (rng.uniform(-0.3, 0.3) if kind == "polygon" else 0.0)) / n
                c, s = cos_sin(turn)
                rad = size * (0.45 if kind == "star" and i % 2 else 1.0)
                u, v = c * rad, s * rad * stretch
                px, py = cx + u * ax - v * ay, cy + u * ay + v * ax
                xy.append((round(px * ppu), round(py * ppu)))
            if rng.chance(0.7):
                draw.polygon(xy, fill=255)
            else:
                draw.line([*xy, xy[0]], fill=255, width=stroke, joint="curve")
        m = np.asarray(mask, dtype=np.float64) / 255.0 * rng.uniform(0.7, 1.0)
        col = colours(rng, frame, 1)[0][:, None, None]
        premult = col * m + premult * (1.0 - m)
        alpha = m + alpha * (1.0 - m)
    field = premult / np.maximum(alpha, 1e-9)
    return field, (_ones(frame) if full else alpha)


BACKGROUNDS: tuple[tuple[LayerFn, float], ...] = (
    (solid, 0.5),
    (linear_gradient, 2.0),
    (radial_gradient, 1.5),
    (plasma, 2.0),
    (stripes, 1.0),
    (checkerboard, 0.7),
    (rings, 0.8),
    (blobs, 0.8),
)
"""Layers that may start a composition, with their relative weights."""

OVERLAYS: tuple[tuple[LayerFn, float], ...] = (
    (linear_gradient, 1.0),
    (radial_gradient, 1.0),
    (plasma, 1.2),
    (stripes, 1.5),
    (checkerboard, 0.7),
    (rings, 1.0),
    (blobs, 1.5),
    (shapes, 2.5),
)
"""Layers that may be stacked on top, with their relative weights."""

MOTIFS: tuple[tuple[LayerFn, float], ...] = tuple(
    (fn, weight) for fn, weight in OVERLAYS if fn not in (linear_gradient, radial_gradient)
)
"""Overlays with a clear motif (no plain gradients): the top layer is one of these, so no image is
just a soft wash of colour."""
