"""Probe sets: a pure function of the pool, kind, count and nonce."""

from __future__ import annotations

import pytest
import torch

from backmark.constants import CONTRAST_KINDS
from backmark.contrast import DEFAULT_KIND
from backmark.contrast.probes import PROBE_KINDS, SHIFTS, draw, draw_probes, shifted
from backmark.errors import BackmarkError

POOL = torch.stack([torch.full((1, 8, 8), v, dtype=torch.uint8) for v in (0, 50, 100, 150, 200, 250)])
NONCE = bytes(range(32))


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_probes_are_reproducible_and_change_with_the_nonce(kind: str) -> None:
    a = draw_probes(POOL, kind=kind, count=300, nonce=NONCE)
    assert a.dtype == torch.uint8 and a.shape == (300, 1, 8, 8)
    assert torch.equal(a, draw_probes(POOL, kind=kind, count=300, nonce=NONCE))
    assert not torch.equal(a, draw_probes(POOL, kind=kind, count=300, nonce=bytes(32)))


def test_the_cli_offers_every_kind_and_defaults_to_the_library_s() -> None:
    assert CONTRAST_KINDS == PROBE_KINDS
    assert CONTRAST_KINDS[0] == DEFAULT_KIND


def test_natural_probes_are_pool_images() -> None:
    probes = draw_probes(POOL, kind="natural", count=100, nonce=NONCE)
    assert set(probes[:, 0, 0, 0].tolist()) <= {0, 50, 100, 150, 200, 250}


def test_shifted_probes_move_a_pool_image_by_at_most_one_pixel_repeating_its_edge() -> None:
    ramp = torch.arange(48, dtype=torch.uint8).view(1, 1, 6, 8) * 5  # every pixel differs
    pool = torch.cat([ramp, ramp + 1])
    moved = shifted(pool, torch.arange(2 * len(SHIFTS)))
    assert torch.equal(moved[0], ramp[0]) and torch.equal(moved[len(SHIFTS)], ramp[0] + 1)
    img = ramp[0, 0]
    expected = {
        (1, 0): torch.cat([img[:1], img[:-1]]),  # down: the top row repeated
        (-1, 0): torch.cat([img[1:], img[-1:]]),
        (0, 1): torch.cat([img[:, :1], img[:, :-1]], dim=1),
        (0, -1): torch.cat([img[:, 1:], img[:, -1:]], dim=1),
    }
    for m, move in enumerate(SHIFTS[1:], start=1):
        assert torch.equal(moved[m, 0], expected[move])
    probes = draw_probes(pool, kind="shifted", count=400, nonce=NONCE)
    assert torch.equal(torch.unique(probes.flatten(1), dim=0), torch.unique(moved.flatten(1), dim=0))


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
    elif kind == "shifted":  # 300 draws from 6 images x 5 moves: 30 queries
        assert len(drawn.images) == len(POOL) * len(SHIFTS)
        assert drawn.source is not None and torch.equal(shifted(POOL, drawn.source), drawn.images)
    else:  # mixed probes are new images: every draw is asked
        assert len(drawn.images) == 300
        assert drawn.source is None
