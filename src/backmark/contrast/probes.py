"""Probe images for the sibling-contrast test, drawn from a seed fixed after the suspect is.

A probe set is a pure function of a pool of natural images of the task (uint8 (M, C, H, W), e.g. the
owner's test split), a kind, a count and a nonce (a verifier's challenge), so anyone holding the pool and
the nonce draws the same probes. Probes are drawn independently of each other (with replacement), which
is what makes the probe-level count exactly binomial given the models; the rate it tests is the rate over
the pool (every image equally likely), so the pool is every natural image of the task the verifier holds.

A natural image drawn twice is one query: :func:`draw` returns the distinct images and, per draw, which
of them it is, so a suspect whose answers are fixed answers each image once (:mod:`backmark.contrast`
queries it so). The draws, and so the test, are exactly those of :func:`draw_probes`.

Kinds:
    ``natural``: pool images as they are.
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

ProbeKind = Literal["natural", "cutmix", "mixup"]
PROBE_KINDS: tuple[str, ...] = get_args(ProbeKind)
_TAG = b"backmark/v1/contrast/probes"


def _generator(nonce: bytes, kind: str) -> torch.Generator:
    seed = hashlib.sha256(_TAG + b"/" + kind.encode() + b"/" + nonce).digest()
    return torch.Generator().manual_seed(int.from_bytes(seed[:8], "big") & (2**63 - 1))


@dataclass(frozen=True, eq=False)
class ProbeDraw:
    """``count`` draws as distinct images to query and an index: draw ``i`` is ``images[index[i]]``.

    ``images``: uint8 (Q, C, H, W), ``Q`` at most the count (natural draws repeat pool images; mixed ones
    do not); ``index``: int64 (count,); ``source``: for natural probes the pool index of each distinct
    image, int64 (Q,) (so answers already known for the whole pool can be reused); None for mixed ones.
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
    if kind != "natural":
        return ProbeDraw(probes, torch.arange(count))
    distinct, index = torch.unique(probes, return_inverse=True)
    return ProbeDraw(pool[distinct].clone(), index, source=distinct)


def draw_probes(pool: torch.Tensor, *, kind: str, count: int, nonce: bytes) -> torch.Tensor:
    """``count`` probes of ``kind`` from ``pool``, drawn from ``nonce``: uint8 (count, C, H, W)."""
    probes = _draw(pool, kind=kind, count=count, nonce=nonce)
    return pool[probes].clone() if kind == "natural" else probes


def _draw(pool: torch.Tensor, *, kind: str, count: int, nonce: bytes) -> torch.Tensor:
    """The draws: pool indices (count,) for natural probes, the images (count, C, H, W) for mixed ones."""
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
    first = torch.randint(len(pool), (count,), generator=gen)
    if kind == "natural":
        return first
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
