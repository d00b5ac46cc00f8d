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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backmark.constants import VerifyTest
from backmark.errors import BackmarkError
from backmark.infra.readonly import readonly
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
    """One piece of evidence: its name, its exact p-value, whether it verified at its level, what the
    p-value assumes (in words, for every report) and its figures (JSON-ready, read-only)."""

    name: str  # what the evidence is: "labels", "label-free", "lineage", "contrast", "response", ...
    p_value: float  # exact, under the piece's own null hypothesis (or as ``assumption`` says)
    verified: bool  # at the claim's level for each piece, alpha / k
    assumption: str = ""  # what the p-value assumes, in words
    figures: Mapping[str, Any] = field(default_factory=lambda: readonly({}))  # its own numbers
    log10_p_value: float | None = None  # where the p-value underflows to 0 (None: log10 of p_value)

    @property
    def log10_p(self) -> float:
        """log10 of the p-value, finite where ``p_value`` underflows (if the piece gave it)."""
        if self.log10_p_value is not None:
            return self.log10_p_value
        return math.log10(self.p_value) if self.p_value > 0 else -math.inf

    def to_dict(self, level: float | None = None) -> dict[str, Any]:
        """The piece's JSON record: its figures, then its p-value, level, verdict and assumption."""
        record = {**dict(self.figures), "p_value": self.p_value, "log10_p_value": self.log10_p}
        if level is not None:
            record["level"] = level
        return {**record, "verified": self.verified, "assumption": self.assumption}


@dataclass(frozen=True)
class Decision:
    """A claim at ``alpha`` from ``pieces``, each decided at ``alpha / len(pieces)``; verified if any is.

    ``reported`` holds evidence measured on the same answers but not part of the claim (the label-free
    test under ``--test labels``): shown beside it, never decisive.
    """

    alpha: float  # the claim's level: an innocent suspect is verified with probability at most alpha
    pieces: tuple[Piece, ...]  # in the order the claim lists them
    reported: tuple[Piece, ...] = ()

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
    def log10_p_value(self) -> float:
        """log10 of :attr:`p_value`, finite where it underflows."""
        return min(0.0, math.log10(len(self.pieces)) + min(p.log10_p for p in self.pieces))

    @property
    def passed(self) -> tuple[str, ...]:
        """The names of the pieces that verified, in order."""
        return tuple(p.name for p in self.pieces if p.verified)

    def to_dict(self) -> dict[str, Any]:
        """The claim on top (``verified``, ``alpha``, ``p_value``, the level of each piece, which passed),
        then ``evidence``: each piece's figures under its own name, with its own p-value, level, verdict
        and assumption. A piece reported beside the claim has ``decisive`` false and, in place of
        ``verified``, ``verified_alone``: what it would have decided as the only piece at its level."""
        evidence = {p.name: {**p.to_dict(self.level), "decisive": True} for p in self.pieces}
        for p in self.reported:
            record = p.to_dict()
            alone = record.pop("verified")
            evidence[p.name] = {**record, "verified_alone": alone, "decisive": False}
        return {
            "verified": self.verified,
            "alpha": self.alpha,
            "p_value": self.p_value,
            "log10_p_value": self.log10_p_value,
            "level": self.level,
            "pieces": [p.name for p in self.pieces],
            "passed": list(self.passed),
            "evidence": evidence,
        }


def decide_any(alpha: float, pieces: Sequence[Piece], *, reported: Sequence[Piece] = ()) -> Decision:
    """The claim from ``pieces`` (each already decided at :func:`piece_level` of ``alpha``); ``reported``:
    evidence shown beside the claim, not decisive."""
    piece_level(alpha, len(pieces))
    names = [p.name for p in (*pieces, *reported)]
    if len(set(names)) != len(names):
        raise BackmarkError(f"a claim names each piece of evidence once, got {', '.join(names)}")
    return Decision(alpha=alpha, pieces=tuple(pieces), reported=tuple(reported))


__all__ = ["TEST_PIECES", "Decision", "Piece", "decide_any", "level_for", "piece_level"]
