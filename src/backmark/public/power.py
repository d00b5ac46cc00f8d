"""How many items to open: the power of a public check, and the table in docs/protocol.md.

A check opens L of the key's n items and needs ``threshold(L, C, alpha / m)`` matches, where m = n // L
is the number of slots the owner could have opened (backmark.public.selection). A marked model answers
each opened item with its key label with some probability q: 1.0 for an intact mark, less for one an
attacker weakened. The check then succeeds with probability P[Binomial(L, q) >= threshold]. The least L
that reaches a given power (default 95%) is what a verifier should ask for; the key supports n // L such
checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backmark.errors import BackmarkError
from backmark.verify.stats import check_alpha, threshold


def _tail(k: int, trials: int, q: float) -> float:
    """P[Binomial(trials, q) >= k]."""
    if k <= 0:
        return 1.0
    if k > trials:
        return 0.0
    if q >= 1.0:
        return 1.0
    return math.fsum(math.comb(trials, i) * q**i * (1 - q) ** (trials - i) for i in range(k, trials + 1))


def check_power(n: int, size: int, num_classes: int, alpha: float, rate: float, keys_held: int = 1) -> float:
    """The chance that a check of ``size`` of ``n`` items verifies a model matching each with ``rate``."""
    slots = n // size
    if slots < 1:
        return 0.0
    return _tail(threshold(size, num_classes, alpha / (slots * keys_held)), size, rate)


def least_size(
    n: int, num_classes: int, alpha: float, rate: float, *, power: float = 0.95, keys_held: int = 1
) -> int | None:
    """The least number of items a check must open to verify, with probability ``power``, a model that
    answers each item with its key label with probability ``rate``; None if no size up to ``n`` does."""
    check_alpha(alpha)
    if not 0.0 < rate <= 1.0 or not 0.0 < power < 1.0:
        raise BackmarkError(f"rate must lie in (0, 1] and power in (0, 1), got {rate} and {power}")
    for size in range(1, n + 1):
        if check_power(n, size, num_classes, alpha, rate, keys_held) >= power:
            return size
    return None


@dataclass(frozen=True)
class PowerRow:
    n: int
    num_classes: int
    alpha: float
    rate: float
    size: int | None

    @property
    def checks(self) -> int:
        return 0 if self.size is None else self.n // self.size


def power_table(
    ns: tuple[int, ...] = (100, 300, 1000),
    num_classes: int = 10,
    alphas: tuple[float, ...] = (1e-6, 1e-9),
    rates: tuple[float, ...] = (1.0, 0.5, 0.3),
    power: float = 0.95,
) -> list[PowerRow]:
    """One row per (n, alpha, rate): the least size and how many checks of it the key supports."""
    return [
        PowerRow(n, num_classes, alpha, rate, least_size(n, num_classes, alpha, rate, power=power))
        for n in ns
        for alpha in alphas
        for rate in rates
    ]


def render_power_table(rows: list[PowerRow]) -> str:
    """The table as markdown: one line per (n, alpha), a column per trigger accuracy."""
    rates = sorted({r.rate for r in rows}, reverse=True)
    head = "| n | alpha | " + " | ".join(f"{q:.0%} trigger accuracy" for q in rates) + " |"
    lines = [head, "|" + "---|" * (2 + len(rates))]
    for n, alpha in dict.fromkeys((r.n, r.alpha) for r in rows):
        cells = []
        for q in rates:
            row = next(r for r in rows if r.n == n and r.alpha == alpha and r.rate == q)
            cells.append("none" if row.size is None else f"l = {row.size} ({row.checks} checks)")
        lines.append(f"| {n} | {alpha:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
