"""One claim of ownership from every piece of evidence at hand, at one family-wise level.

The trigger mark gives two tests on the same answers (the labels test and the label-free test,
:mod:`backmark.verify.labelfree`); the owner's weights give the lineage test (:mod:`backmark.lineage`,
white-box: the suspect's weights must be in hand); the owner's siblings give the contrast test
(:mod:`backmark.contrast`, black-box). Each has an exact p-value under its own null hypothesis, and its
own assumption. The suspect is innocent only if every null holds, so the claim is decided by
:mod:`backmark.verify.decision`: ``k`` pieces, each at ``alpha / k``; by the union bound an innocent
suspect is verified with probability at most ``alpha`` however the tests depend on each other.

    level = claim_level("either", alpha, extra=2)              # 4 pieces: each at alpha / 4
    decision = trigger_claim(tested, extra=[lineage_piece(lin), contrast_piece(con)])
    decision.verified, decision.to_dict()                      # the claim, then each piece

The caller computes the lineage and contrast tests at ``level`` (``--lineage`` and ``--contrast`` of
``backmark verify`` each add one piece).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backmark.constants import VerifyTest
from backmark.contrast import ContrastResult
from backmark.infra.readonly import readonly
from backmark.lineage import LineageResult
from backmark.verify.decision import TEST_PIECES, Decision, Piece, decide_any, piece_level
from backmark.verify.labelfree import TestedVerification, mark_decision


def claim_level(test: VerifyTest, alpha: float, *, extra: int = 0) -> float:
    """The level of each piece of a claim of ``test``'s trigger pieces and ``extra`` more: ``alpha / k``."""
    return piece_level(alpha, TEST_PIECES[test] + extra)


def trigger_claim(tested: TestedVerification, *, extra: Sequence[Piece] = ()) -> Decision:
    """The claim of ``tested`` (its ``test`` and ``alpha``) with ``extra`` pieces, each already decided
    at :func:`claim_level` of ``len(extra)``. The test ``test`` leaves out is reported, not decisive."""
    if not extra:
        return tested.decision
    level = claim_level(tested.test, tested.alpha, extra=len(extra))
    mark = mark_decision(tested.test, tested.labels.evidence.at(level), tested.label_free.at(level))
    return decide_any(tested.alpha, [*mark.pieces, *extra], reported=mark.reported)


def lineage_piece(result: LineageResult) -> Piece:
    """The lineage test (decided at ``result.alpha``, the claim's level for it) as a piece."""
    return Piece(
        name="lineage",
        p_value=result.p_value,
        verified=result.verified,
        assumption=result.assumptions["p_value"],
        figures=readonly(result.figures()),
        log10_p_value=result.log10_p_value,
    )


def contrast_piece(
    result: ContrastResult, *, siblings_digest: str, registration: Mapping[str, Any] | None = None
) -> Piece:
    """The contrast test's probe-level p-value (decided at ``result.alpha``) as a piece; the exact rank
    p-value is among its figures, and, where the sibling record's registry receipt was checked
    (``registration``: its time, registry, entry and owner), when the record was registered."""
    r = result.rank
    figures = {
        **{k: v for k, v in result.probe_figures().items() if k not in ("p_value", "log10_p_value")},
        "rank": r.rank,
        "models": r.models,
        "rank_p": r.p_value,
        "nonce": result.nonce,
        "siblings_digest": siblings_digest,
    }
    if registration is not None:
        figures |= {
            "registered_at": registration["registered_at"],
            "registry": registration["registry"],
            "registry_entry": registration["entry"],
            "registry_owner": registration["owner"],
        }
    return Piece(
        name="contrast",
        p_value=result.p_value,
        log10_p_value=result.log10,
        verified=result.verified,
        assumption=result.assumption,
        figures=readonly(figures),
    )


__all__ = [
    "claim_level",
    "contrast_piece",
    "lineage_piece",
    "trigger_claim",
]
