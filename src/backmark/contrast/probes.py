"""Probe images for the sibling-contrast test, drawn from a seed fixed after the suspect is.

A probe set is a pure function of a pool of natural images of the task (uint8 (M, C, H, W), e.g. the
owner's test split), a kind, a count and a nonce (a verifier's challenge), so anyone holding the pool and
the nonce draws the same probes. Probes are drawn independently of each other (with replacement), which
is what makes the probe-level count exactly binomial given the models; the rate it tests is the rate over
the pool (every image equally likely), so the pool is every natural image of the task the verifier holds.

A natural or shifted image drawn twice is one query: :func:`draw` returns the distinct images and, per
draw, which of them it is, so a suspect whose answers are fixed answers each image once
(:mod:`backmark.contrast` queries it so). The draws, and so the test, are exactly those of
:func:`draw_probes`.

Kinds:
    ``natural``: pool images as they are.
    ``shifted``: a pool image as it is or moved by one pixel left, right, up or down (the edge row or
        column repeated): five natural images of the task for each pool image, so the same number of
        draws repeats fewer images and the rate under test is taken over five times as many inputs.
    ``cutmix``: a pool image with a random rectangle (a quarter to three quarters of its area) pasted
        from another pool image (Yun et al., CutMix, ICCV 2019): mixed content pushes models toward
        their decision boundaries, where equally good models trained with other seeds disagree more.
    ``mixup``: the pixel-wise blend ``l * x + (1 - l) * x'`` of two pool images, ``l`` in [0.3, 0.7].
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from backmark.errors import BackmarkError

ProbeKind = Literal["natural", "shifted", "cutmix", "mixup"]
PROBE_KINDS: tuple[str, ...] = get_args(ProbeKind)
_TAG = b"backmark/v1/contrast/probes"
# the shifted kind's moves (rows, columns), in the order its index counts them: none, down, up, right, left
SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
_INDEXED = {"natural": 1, "shifted": len(SHIFTS)}  # kinds whose draws are indices: inputs per pool image


def _generator(nonce: bytes, kind: str) -> torch.Generator:
    seed = hashlib.sha256(_TAG + b"/" + kind.encode() + b"/" + nonce).digest()
    return torch.Generator().manual_seed(int.from_bytes(seed[:8], "big") & (2**63 - 1))


@dataclass(frozen=True, eq=False)
class ProbeDraw:
    """``count`` draws as distinct images to query and an index: draw ``i`` is ``images[index[i]]``.

    ``images``: uint8 (Q, C, H, W), ``Q`` at most the count (natural and shifted draws repeat inputs; mixed
    ones do not); ``index``: int64 (count,); ``source``: int64 (Q,), for natural probes the pool index of
    each distinct image, for shifted ones ``pool index * len(SHIFTS) + move`` (:func:`shifted`), so answers
    already known for every input can be reused; None for mixed ones.
    """

    images: torch.Tensor
    index: torch.Tensor
    source: torch.Tensor | None = None

    @property
    def count(self) -> int:
        return len(self.index)


def draw(pool: torch.Tensor, *, kind: str, count: int, nonce: bytes) -> ProbeDraw:
    """``count`` probes of ``kind`` from ``pool`` and ``nonce``; each distinct image held once."""
    probes = _draw(pool, kind=kind, count=count, nonce=nonce)
    if kind not in _INDEXED:
        return ProbeDraw(probes, torch.arange(count))
    distinct, index = torch.unique(probes, return_inverse=True)
    return ProbeDraw(_inputs(pool, kind, distinct), index, source=distinct)


def draw_probes(pool: torch.Tensor, *, kind: str, count: int, nonce: bytes) -> torch.Tensor:
    """``count`` probes of ``kind`` from ``pool``, drawn from ``nonce``: uint8 (count, C, H, W)."""
    probes = _draw(pool, kind=kind, count=count, nonce=nonce)
    return _inputs(pool, kind, probes) if kind in _INDEXED else probes


def shifted(pool: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The shifted kind's inputs ``index`` (int64, each ``pool index * len(SHIFTS) + move``): (N, C, H, W).

    Move ``m`` shifts the image by ``SHIFTS[m]`` (rows, columns) pixels; the row or column that comes in
    repeats the image's edge.
    """
    images, moves = index // len(SHIFTS), index % len(SHIFTS)
    _, _, h, w = pool.shape
    out = pool[images].clone()
    for m, (dy, dx) in enumerate(SHIFTS):
        chosen = (moves == m).nonzero().flatten()
        if m == 0 or len(chosen) == 0:
            continue
        rows = (torch.arange(h) - dy).clamp(0, h - 1)
        cols = (torch.arange(w) - dx).clamp(0, w - 1)
        out[chosen] = out[chosen][:, :, rows][:, :, :, cols]
    return out


def _inputs(pool: torch.Tensor, kind: str, index: torch.Tensor) -> torch.Tensor:
    """The inputs an indexed kind's draws name."""
    return pool[index].clone() if kind == "natural" else shifted(pool, index)


def _draw(pool: torch.Tensor, *, kind: str, count: int, nonce: bytes) -> torch.Tensor:
    """The draws: indices (count,) for natural and shifted probes, images (count, C, H, W) for mixed ones."""
    if kind not in PROBE_KINDS:
        raise BackmarkError(f"probe kind must be one of {', '.join(PROBE_KINDS)}, got {kind!r}")
    if pool.dtype != torch.uint8 or pool.dim() != 4 or len(pool) < 2:
        raise BackmarkError(
            f"the probe pool must be at least 2 uint8 images (N, C, H, W), got {pool.dtype} "
            f"{tuple(pool.shape)}"
        )
    if count < 1:
        raise BackmarkError(f"{{probes}} must be at least 1, got {count}", params=["probes"])
    if len(nonce) < 16:
        raise BackmarkError("the probe nonce must hold at least 16 bytes; use a fresh challenge")
    gen = _generator(nonce, kind)
    if kind in _INDEXED:
        return torch.randint(len(pool) * _INDEXED[kind], (count,), generator=gen)
    first = torch.randint(len(pool), (count,), generator=gen)
    second = torch.randint(len(pool), (count,), generator=gen)
    a, b = pool[first], pool[second]
    if kind == "mixup":
        lam = 0.3 + 0.4 * torch.rand(count, 1, 1, 1, generator=gen)
        return (lam * a.float() + (1 - lam) * b.float()).round().clamp(0, 255).to(torch.uint8)
    _, _, h, w = pool.shape
    area = 0.25 + 0.5 * torch.rand(count, generator=gen)
    aspect = torch.exp((torch.rand(count, generator=gen) - 0.5) * 1.0)  # from e^-0.5 to e^0.5
    bh = (torch.sqrt(area * aspect) * h).round().clamp(1, h).to(torch.int64)
    bw = (torch.sqrt(area / aspect) * w).round().clamp(1, w).to(torch.int64)
    top = (torch.rand(count, generator=gen) * (h - bh + 1)).floor().to(torch.int64)
    left = (torch.rand(count, generator=gen) * (w - bw + 1)).floor().to(torch.int64)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = (
        (rows >= top.view(-1, 1, 1))
        & (rows < (top + bh).view(-1, 1, 1))
        & (cols >= left.view(-1, 1, 1))
        & (cols < (left + bw).view(-1, 1, 1))
    )
    return torch.where(inside.unsqueeze(1), b, a)
