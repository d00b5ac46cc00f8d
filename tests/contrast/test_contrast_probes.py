"""Probe sets: a pure function of the pool, kind, count and nonce."""

from __future__ import annotations

import pytest
import torch

from backmark.contrast.probes import PROBE_KINDS, draw, draw_probes
from backmark.errors import BackmarkError

POOL = torch.stack([torch.full((1, 8, 8), v, dtype=torch.uint8) for v in (0, 50, 100, 150, 200, 250)])
NONCE = bytes(range(32))


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_probes_are_reproducible_and_change_with_the_nonce(kind: str) -> None:
    a = draw_probes(POOL, kind=kind, count=300, nonce=NONCE)
    assert a.dtype == torch.uint8 and a.shape == (300, 1, 8, 8)
    assert torch.equal(a, draw_probes(POOL, kind=kind, count=300, nonce=NONCE))
    assert not torch.equal(a, draw_probes(POOL, kind=kind, count=300, nonce=bytes(32)))


def test_natural_probes_are_pool_images() -> None:
    probes = draw_probes(POOL, kind="natural", count=100, nonce=NONCE)
    assert set(probes[:, 0, 0, 0].tolist()) <= {0, 50, 100, 150, 200, 250}


def _is_rectangle(mask: torch.Tensor) -> bool:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return bool(mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all())


def test_cutmix_pastes_one_rectangle_from_a_second_image() -> None:
    probes = draw_probes(POOL, kind="cutmix", count=200, nonce=NONCE)
    mixed = 0
    for p in probes[:, 0]:
        values = p.unique().tolist()
        assert len(values) <= 2 and set(values) <= {0, 50, 100, 150, 200, 250}
        if len(values) == 2:
            mixed += 1
            assert any(_is_rectangle(p == v) for v in values)
            share = min(int((p == v).sum()) for v in values) / p.numel()
            assert share >= 0.05  # a quarter to three quarters of the area, rounded to whole pixels
    assert mixed > 100  # most probes mix two different images


def test_mixup_blends_two_pool_images() -> None:
    probes = draw_probes(POOL, kind="mixup", count=200, nonce=NONCE)
    assert probes.shape == (200, 1, 8, 8)
    assert all(len(p.unique()) == 1 for p in probes)  # constant images blend to constant images


def test_bad_requests_are_one_line_errors() -> None:
    with pytest.raises(BackmarkError, match="probe kind"):
        draw_probes(POOL, kind="gaussian", count=1, nonce=NONCE)
    with pytest.raises(BackmarkError, match="16 bytes"):
        draw_probes(POOL, kind="natural", count=1, nonce=b"short")
    with pytest.raises(BackmarkError, match="probes"):
        draw_probes(POOL, kind="natural", count=0, nonce=NONCE)
    with pytest.raises(BackmarkError, match="uint8"):
        draw_probes(POOL.float(), kind="natural", count=1, nonce=NONCE)


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_draw_asks_each_distinct_image_once_and_keeps_the_draws(kind: str) -> None:
    drawn = draw(POOL, kind=kind, count=300, nonce=NONCE)
    assert drawn.count == 300
    assert torch.equal(drawn.images[drawn.index], draw_probes(POOL, kind=kind, count=300, nonce=NONCE))
    if kind == "natural":  # 300 draws from 6 images: 6 queries
        assert len(drawn.images) == len(POOL)
        assert len(torch.unique(drawn.images.flatten(1), dim=0)) == len(drawn.images)
        assert drawn.source is not None and torch.equal(POOL[drawn.source], drawn.images)
    else:  # mixed probes are new images: every draw is asked
        assert len(drawn.images) == 300
        assert drawn.source is None
