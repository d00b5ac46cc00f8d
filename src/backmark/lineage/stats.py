"""Exact laws for lineage: how many units a uniformly random matching leaves in place, and Fisher.

Under the lineage null (docs/lineage.md) a layer's matching is a uniformly random injection of the owner's
units into the suspect's. A unit "hits" when it is matched to the suspect's unit of the same index. Of
``eligible`` units that could hit (each has its own index among the suspect's ``targets`` units), the
number of hits ``F`` has the law

    P(F = k) = sum_{j >= k} (-1)^(j-k) C(j, k) C(e, j) (N - j)! / N!

(inclusion-exclusion over the sets of units forced to hit), so its tail is computed here with Python's
integers, exactly, and returned as a fraction: no normal approximation, no underflow (1/128! is fine).
"""

from __future__ import annotations

import math
from fractions import Fraction


def hits_tail(hits: int, *, eligible: int, targets: int) -> Fraction:
    """``P(F >= hits)`` for ``eligible`` units among ``targets`` under a uniformly random matching.

    Uses ``P(F >= k) = sum_{j >= k} (-1)^(j-k) C(j-1, k-1) C(e, j) (N-j)!/N!`` for ``k >= 1``: the
    alternating sum is exact in integers. ``eligible`` must not exceed ``targets``.
    """
    if not 0 <= eligible <= targets:
        raise ValueError(f"eligible must be in [0, targets], got {eligible} of {targets}")
    if hits <= 0:
        return Fraction(1)
    if hits > eligible:
        return Fraction(0)
    total = 0
    for j in range(hits, eligible + 1):
        term = math.comb(j - 1, hits - 1) * math.comb(eligible, j) * math.factorial(targets - j)
        total += term if (j - hits) % 2 == 0 else -term
    return Fraction(total, math.factorial(targets))


def log10(p: Fraction) -> float:
    """``log10(p)`` of an exact probability, however small (``-inf`` for 0)."""
    if p <= 0:
        return -math.inf
    return math.log10(p.numerator) - math.log10(p.denominator)


def to_float(log10_p: float) -> float:
    """The p-value as a float from its ``log10`` (0.0 below the smallest float: keep the log too)."""
    return 10.0**log10_p if log10_p > -320 else 0.0


def fisher_log10(log10_ps: list[float]) -> float:
    """``log10`` of Fisher's combined p-value of independent p-values given by their ``log10``.

    ``X = -2 sum ln p_i`` is chi-square with ``2L`` degrees of freedom for uniform p-values, whose tail
    has the closed form ``exp(-X/2) sum_{i<L} (X/2)^i / i!``; computed in logs, so p-values of 1e-300
    combine without underflow. For p-values that are exact but discrete (never below uniform:
    ``P(p <= t) <= t``) the result is conservative: each ``-2 ln p_i`` is stochastically smaller than a
    chi-square with 2 degrees of freedom, so their sum is too.
    """
    if not log10_ps:
        return 0.0
    if any(v == -math.inf for v in log10_ps):
        return -math.inf
    s = -math.log(10) * sum(log10_ps)  # X/2 = -sum ln p_i >= 0
    if s <= 0:
        return 0.0
    # log sum_{i<L} s^i / i!, each term in logs
    terms = [i * math.log(s) - math.lgamma(i + 1) for i in range(len(log10_ps))]
    top = max(terms)
    log_sum = top + math.log(sum(math.exp(t - top) for t in terms))
    return min(0.0, (-s + log_sum) / math.log(10))


def binomial_tail(k: int, *, n: int, q: Fraction) -> Fraction:
    """``P(X >= k)`` for ``X ~ Binomial(n, q)``, exactly (``q`` a fraction)."""
    if k <= 0:
        return Fraction(1)
    if k > n:
        return Fraction(0)
    num, den = q.numerator, q.denominator
    total = sum(math.comb(n, j) * num**j * (den - num) ** (n - j) for j in range(k, n + 1))
    return Fraction(total, den**n)
