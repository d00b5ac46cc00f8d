"""The exact decision of SPEC section 3: a one-sided binomial test with success probability 1/C.

Key labels are drawn uniformly from C classes, independently of the trigger images, so a model that never
saw the key matches each key label with probability exactly 1/C, independently across triggers, whatever it
predicts. Under that null hypothesis the number of matches is exactly Binomial(n, 1/C); the p-value of k
matches is P[X >= k]. The tail is computed in exact integer arithmetic, so it is right even far below the
smallest float (see :func:`log10_p_value`).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

from backmark.errors import BackmarkError


def _check(n: int, num_classes: int) -> None:
    if n < 1:
        raise BackmarkError(f"the trigger set size must be at least 1, got {n}")
    if num_classes < 2:
        raise BackmarkError(f"the class count must be at least 2, got {num_classes}")


def check_alpha(alpha: float) -> None:
    """Raise BackmarkError unless ``alpha`` is a significance level: a number strictly in (0, 1), not NaN."""
    if not 0.0 < alpha < 1.0:  # also false for NaN
        raise BackmarkError(f"alpha must lie strictly between 0 and 1, got {alpha}")


def check_eps(eps: float) -> None:
    """Raise BackmarkError unless ``eps`` (the paper's tolerated error fraction) lies in [0, 1), not NaN."""
    if not 0.0 <= eps < 1.0:  # also false for NaN
        raise BackmarkError(f"eps must lie in [0, 1), got {eps}")


@lru_cache(maxsize=256)
def _tail_numerators(n: int, num_classes: int) -> tuple[int, ...]:
    """``tail[k] = C**n * P[X >= k]`` for k = 0..n+1, all integers: sum_{i>=k} comb(n,i) (C-1)^(n-i)."""
    tail = [0] * (n + 2)
    for i in range(n, -1, -1):
        tail[i] = tail[i + 1] + math.comb(n, i) * (num_classes - 1) ** (n - i)
    return tuple(tail)


def p_value_exact(matches: int, n: int, num_classes: int) -> Fraction:
    """P[X >= matches] for X ~ Binomial(n, 1/num_classes), as an exact fraction."""
    _check(n, num_classes)
    if not 0 <= matches <= n:
        raise BackmarkError(f"matches must lie in 0..{n}, got {matches}")
    return Fraction(_tail_numerators(n, num_classes)[matches], num_classes**n)


def p_value(matches: int, n: int, num_classes: int) -> float:
    """P[X >= matches] as a float (0.0 only where the true value is below about 1e-308)."""
    return float(p_value_exact(matches, n, num_classes))


def log10_p_value(matches: int, n: int, num_classes: int) -> float:
    """log10 of P[X >= matches], exact to float precision however small the p-value is."""
    exact = p_value_exact(matches, n, num_classes)
    return math.log10(exact.numerator) - math.log10(exact.denominator)


def threshold(n: int, num_classes: int, alpha: float) -> int:
    """The fewest matches k with P[X >= k] <= alpha; n + 1 if even n matches are not enough.

    Deciding "verified" when matches >= threshold has a false-positive rate of at most alpha for any
    model that was not marked with this key.
    """
    _check(n, num_classes)
    check_alpha(alpha)
    tail = _tail_numerators(n, num_classes)
    bound = Fraction(alpha) * num_classes**n
    for k in range(n + 1):
        if tail[k] <= bound:
            return k
    return n + 1


def paper_rule(matches: int, n: int, eps: float) -> bool:
    """The paper's Verify: accept if at most eps * n triggers are answered wrongly.

    ``eps`` is read as the decimal it was written as (0.57 means 57/100, not the nearest binary float,
    which is a little less), so eps = 0.57 with n = 100 allows 57 wrong answers.
    """
    check_eps(eps)
    if not 0 <= matches <= n:
        raise BackmarkError(f"matches must lie in 0..{n}, got {matches}")
    return n - matches <= Fraction(repr(float(eps))) * n


# A general null rate: the response mark's test (docs/response-mark.md) uses 1/(C-1), not 1/C.


def _check_rate(n: int, rate: Fraction) -> None:
    if n < 1:
        raise BackmarkError(f"the number of queried images must be at least 1, got {n}")
    if not 0 < rate < 1:
        raise BackmarkError(f"the null rate must lie strictly between 0 and 1, got {rate}")


@lru_cache(maxsize=64)
def _rate_tail_numerators(n: int, a: int, b: int) -> tuple[int, ...]:
    """``tail[k] = b**n * P[X >= k]``, X ~ Binomial(n, a/b): sum_{i>=k} comb(n,i) a^i (b-a)^(n-i)."""
    tail = [0] * (n + 2)
    for i in range(n, -1, -1):
        tail[i] = tail[i + 1] + math.comb(n, i) * a**i * (b - a) ** (n - i)
    return tuple(tail)


def rate_p_value_exact(matches: int, n: int, rate: Fraction) -> Fraction:
    """P[X >= matches] for X ~ Binomial(n, rate), ``rate`` a rational in (0, 1), as an exact fraction."""
    _check_rate(n, rate)
    if not 0 <= matches <= n:
        raise BackmarkError(f"matches must lie in 0..{n}, got {matches}")
    tail = _rate_tail_numerators(n, rate.numerator, rate.denominator)
    return Fraction(tail[matches], rate.denominator**n)


def rate_threshold(n: int, rate: Fraction, alpha: float) -> int:
    """The fewest matches k with P[Binomial(n, rate) >= k] <= alpha; n + 1 if even n are not enough."""
    _check_rate(n, rate)
    check_alpha(alpha)
    tail = _rate_tail_numerators(n, rate.numerator, rate.denominator)
    bound = Fraction(alpha) * rate.denominator**n
    for k in range(n + 1):
        if tail[k] <= bound:
            return k
    return n + 1
