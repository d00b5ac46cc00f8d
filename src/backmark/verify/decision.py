"""Where a claim is decided: one or more pieces of evidence, each at its share of alpha.

A claim may rest on several tests, each with an exact p-value under its own null hypothesis: the labels
test and the label-free test on the same answers (``verify --test either``), the trigger mark and the
response mark (``verify --key --response-key``). The suspect is innocent only if every null holds, so the
claim is verified when any piece verifies at ``alpha / k`` for ``k`` pieces (Bonferroni). By the union
bound an innocent suspect is then verified with probability at most ``k * alpha / k = alpha``, whatever
the dependence between the tests: no independence is assumed (the two tests of ``either`` read the same
answers). The claim's p-value is ``min(1, k * min(p))``.

Every decision of backmark goes through :func:`piece_level` (the one check of ``alpha``) and
:func:`decide_any`; a new piece of evidence is one more :class:`Piece` in the list.

    level = piece_level(alpha, 2)             # each piece is decided at alpha / 2
    decision = decide_any(alpha, [Piece("trigger", p1, p1_ok), Piece("response", p2, p2_ok)])
    decision.verified, decision.p_value, decision.passed
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backmark.constants import VerifyTest
from backmark.errors import BackmarkError
from backmark.verify.stats import check_alpha

# How many pieces of evidence each ``--test`` of ``verify`` decides on.
TEST_PIECES: dict[str, int] = {"labels": 1, "label-free": 1, "either": 2}


def piece_level(alpha: float, pieces: int) -> float:
    """The level each of ``pieces`` tests is decided at, so that the claim errs with probability at most
    ``alpha``: ``alpha / pieces``. ``alpha`` must lie strictly in (0, 1)."""
    check_alpha(alpha)
    if pieces < 1:
        raise BackmarkError(f"a claim needs at least one piece of evidence, got {pieces}")
    return alpha / pieces


def level_for(test: VerifyTest, alpha: float) -> float:
    """The level each test of ``verify --test TEST`` is decided at: ``alpha``, or ``alpha / 2`` for
    ``either``."""
    return piece_level(alpha, TEST_PIECES[test])


@dataclass(frozen=True)
class Piece:
    """One piece of evidence: its name, its exact p-value and whether it verified at its level."""

    name: str  # what the evidence is: "labels", "label-free", "trigger", "response", ...
    p_value: float  # exact, under the piece's own null hypothesis
    verified: bool  # at the claim's level for each piece, alpha / k


@dataclass(frozen=True)
class Decision:
    """A claim at ``alpha`` from ``pieces``, each decided at ``alpha / len(pieces)``; verified if any is."""

    alpha: float  # the claim's level: an innocent suspect is verified with probability at most alpha
    pieces: tuple[Piece, ...]  # in the order the claim lists them

    @property
    def level(self) -> float:
        return self.alpha / len(self.pieces)

    @property
    def verified(self) -> bool:
        return any(p.verified for p in self.pieces)

    @property
    def p_value(self) -> float:
        """The claim's p-value: ``min(1, k * min(p))`` over its ``k`` pieces."""
        return min(1.0, len(self.pieces) * min(p.p_value for p in self.pieces))

    @property
    def passed(self) -> tuple[str, ...]:
        """The names of the pieces that verified, in order."""
        return tuple(p.name for p in self.pieces if p.verified)


def decide_any(alpha: float, pieces: Sequence[Piece]) -> Decision:
    """The claim from ``pieces`` (each already decided at :func:`piece_level` of ``alpha``)."""
    piece_level(alpha, len(pieces))
    return Decision(alpha=alpha, pieces=tuple(pieces))


__all__ = ["TEST_PIECES", "Decision", "Piece", "decide_any", "level_for", "piece_level"]
