"""The exact binomial decision of SPEC section 3, checked against independent exact arithmetic."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from backmark.errors import BackmarkError
from backmark.verify.stats import log10_p_value, p_value, p_value_exact, paper_rule, threshold


def reference_tail(k: int, n: int, num_classes: int) -> Fraction:
    """P[X >= k] for X ~ Binomial(n, 1/C), summed term by term with exact probabilities."""
    p = Fraction(1, num_classes)
    return sum(
        (Fraction(math.comb(n, i)) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)),
        start=Fraction(0),
    )


SPEC_TABLE = {
    (20, 10): (7, 8, 11, 14),
    (50, 10): (11, 14, 18, 22),
    (100, 10): (19, 21, 28, 33),
    (100, 100): (5, 6, 9, 12),
}
ALPHAS = (1e-2, 1e-3, 1e-6, 1e-9)


@pytest.mark.parametrize(
    ("n", "num_classes", "alpha", "expected"),
    [(n, c, a, k) for (n, c), ks in SPEC_TABLE.items() for a, k in zip(ALPHAS, ks, strict=True)],
)
def test_threshold_matches_spec_table(n: int, num_classes: int, alpha: float, expected: int) -> None:
    assert threshold(n, num_classes, alpha) == expected


@pytest.mark.parametrize(
    ("n", "num_classes"), [(1, 2), (5, 2), (20, 10), (37, 3), (50, 10), (100, 10), (100, 100), (64, 7)]
)
@pytest.mark.parametrize("alpha", [0.5, 0.05, 1e-2, 1e-3, 1e-6, 1e-9, 1e-30])
def test_threshold_is_the_exact_minimum(n: int, num_classes: int, alpha: float) -> None:
    k = threshold(n, num_classes, alpha)
    bound = Fraction(alpha)
    assert 0 <= k <= n + 1
    if k <= n:
        assert reference_tail(k, n, num_classes) <= bound
    if k >= 1:
        # one match fewer would exceed the stated false-positive rate (the off-by-one other tools have)
        assert reference_tail(k - 1, n, num_classes) > bound


def test_threshold_is_n_plus_one_when_even_all_matches_are_not_enough() -> None:
    # P[X >= 5] for n=5, C=2 is 1/32 > 1e-3
    assert threshold(5, 2, 1e-3) == 6
    assert threshold(5, 2, 1 / 32) == 5


@pytest.mark.parametrize(
    ("n", "num_classes"), [(1, 2), (10, 2), (20, 10), (50, 10), (100, 10), (30, 100), (13, 7)]
)
def test_p_value_equals_independent_exact_sum(n: int, num_classes: int) -> None:
    for k in range(n + 1):
        expected = reference_tail(k, n, num_classes)
        assert p_value_exact(k, n, num_classes) == expected
        assert p_value(k, n, num_classes) == pytest.approx(float(expected), rel=1e-12)


def test_p_value_known_values() -> None:
    assert p_value(100, 100, 10) == pytest.approx(1e-100, rel=1e-12)
    assert p_value_exact(100, 100, 10) == Fraction(1, 10**100)
    assert p_value(0, 100, 10) == 1.0
    assert p_value_exact(0, 37, 3) == 1
    assert p_value(1, 100, 10) == pytest.approx(1 - 0.9**100, rel=1e-12)
    assert p_value(1, 1, 2) == 0.5
    # P[X >= 2] for n = 2: both match
    assert p_value_exact(2, 2, 4) == Fraction(1, 16)


def test_p_value_decreases_with_matches() -> None:
    values = [p_value_exact(k, 60, 10) for k in range(61)]
    assert all(a > b for a, b in itertools.pairwise(values))


def test_log10_p_value_far_below_the_smallest_float() -> None:
    assert p_value(1000, 1000, 100) == 0.0  # underflows as a float ...
    assert log10_p_value(1000, 1000, 100) == pytest.approx(-2000.0, abs=1e-9)  # ... but not in log10
    assert log10_p_value(100, 100, 10) == pytest.approx(-100.0, abs=1e-9)
    # n = 1000, C = 10, 999 matches: 1000 * 9 / 10**1000 + 10**-1000 = 9001e-1000
    assert log10_p_value(999, 1000, 10) == pytest.approx(math.log10(9001) - 1000, abs=1e-9)
    assert log10_p_value(0, 1000, 100) == 0.0


@pytest.mark.parametrize(("k", "n", "num_classes"), [(3, 20, 10), (19, 100, 10), (40, 50, 2), (7, 30, 7)])
def test_log10_p_value_agrees_with_float(k: int, n: int, num_classes: int) -> None:
    assert log10_p_value(k, n, num_classes) == pytest.approx(
        math.log10(float(reference_tail(k, n, num_classes))), abs=1e-12
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: p_value(0, 0, 10),
        lambda: p_value(1, 10, 1),
        lambda: p_value(-1, 10, 10),
        lambda: p_value(11, 10, 10),
        lambda: log10_p_value(11, 10, 10),
        lambda: threshold(0, 10, 0.01),
        lambda: threshold(10, 1, 0.01),
        lambda: threshold(10, 10, 0.0),
        lambda: threshold(10, 10, 1.0),
        lambda: threshold(10, 10, -0.1),
        lambda: threshold(10, 10, 1.5),
        lambda: threshold(10, 10, float("nan")),
        lambda: paper_rule(5, 10, -0.1),
        lambda: paper_rule(5, 10, 1.0),
        lambda: paper_rule(11, 10, 0.1),
        lambda: paper_rule(-1, 10, 0.1),
    ],
)
def test_bad_inputs_raise_backmark_error(call: object) -> None:
    with pytest.raises(BackmarkError) as info:
        call()  # type: ignore[operator]
    assert "\n" not in str(info.value)


def test_paper_rule() -> None:
    # at most eps * n wrong answers
    assert paper_rule(90, 100, 0.1)
    assert not paper_rule(89, 100, 0.1)
    assert paper_rule(100, 100, 0.0)
    assert not paper_rule(99, 100, 0.0)
    assert paper_rule(19, 20, 0.05)
    assert not paper_rule(18, 20, 0.05)
    assert paper_rule(27, 30, 0.1)  # 0.1 * 30 is 3.0000000000000004 as a float
    # 0.57 * 100 is 56.99999999999999 as a float; the rule means 57
    assert paper_rule(43, 100, 0.57)
    assert not paper_rule(42, 100, 0.57)


def test_paper_rule_allows_floor_of_eps_n_errors_exactly() -> None:
    for eps_text in ("0.1", "0.05", "0.2", "0.3", "0.57", "0.15", "0.7", "0.33"):
        eps = float(eps_text)
        for n in (1, 3, 7, 10, 20, 30, 100, 200, 300, 1000):
            allowed = math.floor(Fraction(eps_text) * n)
            assert paper_rule(n - allowed, n, eps), (eps_text, n)
            if allowed < n:
                assert not paper_rule(n - allowed - 1, n, eps), (eps_text, n)
