"""The exact law of same-index matches, against enumeration; Fisher's combination in logs."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from backmark.lineage.stats import binomial_tail, fisher_log10, hits_tail


@pytest.mark.parametrize(("eligible", "targets"), [(4, 4), (5, 5), (3, 5), (4, 6), (2, 2)])
def test_hits_tail_is_the_law_of_a_uniformly_random_injection(eligible: int, targets: int) -> None:
    # every injection of `eligible` units into `targets`, equally likely: count the fixed points
    counts: dict[int, int] = {}
    total = 0
    for image in itertools.permutations(range(targets), eligible):
        hits = sum(i == j for i, j in enumerate(image))
        counts[hits] = counts.get(hits, 0) + 1
        total += 1
    for k in range(eligible + 2):
        expected = Fraction(sum(c for h, c in counts.items() if h >= k), total)
        assert hits_tail(k, eligible=eligible, targets=targets) == expected


def test_hits_tail_of_a_full_identity_is_one_over_n_factorial() -> None:
    assert hits_tail(128, eligible=128, targets=128) == Fraction(1, math.factorial(128))
    assert hits_tail(0, eligible=10, targets=10) == 1


def test_binomial_tail_is_exact() -> None:
    q = Fraction(1, 4)
    assert binomial_tail(2, n=2, q=q) == Fraction(1, 16)
    assert binomial_tail(1, n=2, q=q) == 1 - Fraction(9, 16)


def test_fisher_combination_matches_the_chi_square_tail() -> None:
    # two p-values of 0.05: X = -2 ln(0.0025) = 11.98, chi-square with 4 df: exp(-X/2)(1 + X/2)
    x = -2 * math.log(0.05 * 0.05)
    expected = math.exp(-x / 2) * (1 + x / 2)
    assert fisher_log10([math.log10(0.05)] * 2) == pytest.approx(math.log10(expected))
    assert fisher_log10([0.0, 0.0]) == 0.0
    assert fisher_log10([-400.0, -300.0]) < -690  # no underflow
