"""The power table: the least number of items to open, for an intact and a weakened mark."""

from __future__ import annotations

import pytest

from backmark.errors import BackmarkError
from backmark.public import least_size, power_table
from backmark.public.power import check_power, render_power_table
from backmark.verify.stats import threshold


@pytest.mark.parametrize(
    ("n", "alpha", "rate"), [(100, 1e-6, 1.0), (100, 1e-6, 0.5), (1000, 1e-9, 0.3), (300, 1e-9, 0.5)]
)
def test_the_least_size_is_least(n: int, alpha: float, rate: float) -> None:
    size = least_size(n, 10, alpha, rate)
    assert size is not None
    assert check_power(n, size, 10, alpha, rate) >= 0.95
    assert all(check_power(n, s, 10, alpha, rate) < 0.95 for s in range(1, size))


def test_an_intact_mark_needs_the_threshold_at_the_corrected_level() -> None:
    size = least_size(100, 10, 1e-6, 1.0)
    assert size == 8  # 8 of 8 matches: p = 1e-8 <= 1e-6 / 12 slots
    assert threshold(8, 10, 1e-6 / 12) == 8 and threshold(7, 10, 1e-6 / 14) == 8


def test_a_key_too_small_for_a_weak_mark_says_so() -> None:
    assert least_size(100, 10, 1e-6, 0.3) is None
    table = render_power_table(power_table(ns=(100,), alphas=(1e-6,)))
    assert "none" in table and "l = 8 (12 checks)" in table


def test_bad_arguments() -> None:
    with pytest.raises(BackmarkError):
        least_size(100, 10, 1e-6, 0.0)
    with pytest.raises(BackmarkError):
        least_size(100, 10, 2.0, 0.5)
