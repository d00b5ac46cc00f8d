"""One claim from both marks: the trigger set in the weights and the response mark in the served answers.

Each test gives a valid p-value under its own null hypothesis, and the suspect is innocent only if every
null holds. The claim is decided by :mod:`backmark.verify.decision` from three pieces: the trigger mark's
labels and label-free tests (``verify``'s default decision, which survives renamed classes) and the
response mark, each at ``alpha / 3`` (Bonferroni; the combined p-value is ``min(1, 3 * min(p))``). By the
union bound, an innocent suspect is verified with probability at most alpha, whatever the dependence
between the tests: no independence is assumed. Fisher's method would need the p-values to be independent
under the null and is weakest exactly in the case this claim is for, one mark removed (p near 1) and the
other intact; Bonferroni then costs only a factor 3 on the surviving mark's p-value
(docs/response-mark.md, section 4).

:func:`read_query_log` reads what ``backmark serve`` logged for a response key; :func:`verify_claim` checks
every input, queries the suspect for both marks and decides (``verify --key --response-key``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from backmark.constants import DEFAULT_ALPHA, DEFAULT_EPS
from backmark.errors import BackmarkError
from backmark.infra.readonly import readonly
from backmark.keys import MarkingKey, VerificationKey
from backmark.response.key import ResponseKey
from backmark.response.querylog import LoggedQuery, ResponseLog
from backmark.response.verify import ResponseEvidence, verify_response
from backmark.targets import Target, as_target
from backmark.verify import Evidence, check_decision
from backmark.verify.decision import Decision, Piece, decide_any, piece_level
from backmark.verify.labelfree import TestedVerification, evidence_piece, verify_tests
from backmark.verify.stats import threshold

MARKS = 3  # the claim's pieces of evidence: the trigger mark's two tests and the response mark

RESPONSE_ASSUMES = (
    "exact under H0 (the suspect was made without the served model's altered answers): the altered label "
    "is drawn uniformly among the C - 1 others from a secret keyed hash, so where the suspect's answer "
    "differs from the served one it equals the altered label with probability at most 1/(C - 1): matches "
    "~ Binomial(tested, 1/(C - 1)) given which answers differ (docs/response-mark.md, section 2)"
)


def response_piece(response: ResponseEvidence, *, level: float) -> Piece:
    """The response mark's test as a piece of a claim, decided at ``level``."""
    t = response.threshold_at(level)
    figures = {
        "matches": response.matches,
        "tested": response.tested,
        "logged": response.n,
        "num_classes": response.num_classes,
        "null_rate": float(response.null_rate),
        "threshold": t,
        "unconditional_p_value": response.unconditional_p_value,
    }
    return Piece(
        name="response",
        p_value=response.p_value,
        verified=response.holds_at(level),
        assumption=RESPONSE_ASSUMES,
        figures=readonly(figures),
        log10_p_value=response.log10_p_value,
    )


@dataclass(frozen=True)
class CombinedClaim:
    """Both marks' evidence at ``alpha``: the trigger mark's labels and label-free tests and the response
    mark, each decided at ``alpha / 3`` (without the label-free test: two at ``alpha / 2``); verified if
    any holds."""

    alpha: float
    trigger: Evidence  # the labels test
    response: ResponseEvidence
    label_free: Evidence | None = None  # the label-free test on the trigger answers

    @property
    def level(self) -> float:
        """Each piece's level: alpha / 3, or alpha / 2 without the label-free test."""
        return piece_level(self.alpha, MARKS if self.label_free is not None else MARKS - 1)

    @property
    def trigger_threshold(self) -> int:
        """Matches out of ``trigger.n`` needed at :attr:`level`."""
        return threshold(self.trigger.n, self.trigger.null_classes, self.level)

    @property
    def response_threshold(self) -> int:
        """Matches out of ``response.tested`` needed at :attr:`level`."""
        return self.response.threshold_at(self.level)

    @property
    def trigger_verified(self) -> bool:
        """The trigger mark: the labels (or the label-free) test at :attr:`level`."""
        return self.trigger.matches >= self.trigger_threshold or bool(
            self.label_free is not None and self.label_free.matches >= self.trigger_threshold
        )

    @property
    def response_verified(self) -> bool:
        return self.response.holds_at(self.level)

    @property
    def decision(self) -> Decision:
        level = self.level
        pieces = [evidence_piece("labels", self.trigger.at(level))]
        if self.label_free is not None:
            pieces.append(evidence_piece("label-free", self.label_free.at(level)))
        pieces.append(response_piece(self.response, level=level))
        return decide_any(self.alpha, pieces)

    @property
    def verified(self) -> bool:
        return self.decision.verified

    @property
    def p_value(self) -> float:
        return self.decision.p_value

    @property
    def marks(self) -> tuple[str, ...]:
        """The marks that verified at alpha / 3: ``trigger`` (either of its tests) and ``response``."""
        return tuple(
            m for m, ok in (("trigger", self.trigger_verified), ("response", self.response_verified)) if ok
        )

    def to_dict(self) -> dict[str, Any]:
        """The claim on top, each piece under its own name in ``evidence``; ``trigger`` and ``response``
        keep each mark's full record."""
        k = len(self.decision.pieces)
        return {
            **self.decision.to_dict(),
            "rule": f"Bonferroni: {k} tests each at alpha/{k}, verified if any",
            "marks_verified": list(self.marks),
            "trigger": {**self.trigger.to_dict(), "threshold_at_level": self.trigger_threshold},
            "response": {**self.response.to_dict(), "threshold_at_level": self.response_threshold},
        }


def combine(
    trigger: Evidence, response: ResponseEvidence, *, alpha: float, label_free: Evidence | None = None
) -> CombinedClaim:
    """The combined claim at ``alpha`` from evidence computed at any alpha (thresholds are recomputed):
    three pieces each at ``alpha / 3``, or two at ``alpha / 2`` without ``label_free``."""
    return CombinedClaim(alpha=alpha, trigger=trigger, response=response, label_free=label_free)


@dataclass(frozen=True)
class QueryLogContents:
    """What a query log holds for one response key: the served model's class count, input shape, and
    every altered answer it logged."""

    num_classes: int
    input_shape: tuple[int, int, int]
    logged: tuple[LoggedQuery, ...]


def read_query_log(path: str | Path, key: ResponseKey) -> QueryLogContents:
    """The query log at ``path`` (a file or database URL), refused unless it was kept for ``key``."""
    log = ResponseLog(path, create=False)
    try:
        info = log.info()
        if info.get("key_id") != key.key_id:
            raise BackmarkError(
                f"query log {path} was kept for response key {info.get('key_id')}, not {key.key_id}"
            )
        num_classes = int(info["num_classes"])
        c, h, w = (int(v) for v in json.loads(info["input_shape"]))
        logged = log.read()
    finally:
        log.close()
    return QueryLogContents(num_classes, (c, h, w), tuple(logged))


def check_claim(mk: MarkingKey, log: QueryLogContents, *, alpha: float, eps: float = DEFAULT_EPS) -> None:
    """Every check of :func:`verify_claim` that needs no query: the levels, and a marking key and a query
    log of the same model (classes and input shape)."""
    check_decision(
        n=mk.n,
        num_classes=mk.num_classes,
        alpha=piece_level(alpha, MARKS),
        eps=eps,
        null_classes=mk.null_classes,
    )
    if (mk.input_shape, mk.num_classes) != (log.input_shape, log.num_classes):
        raise BackmarkError(
            f"the marking key is for {mk.num_classes} classes of {mk.input_shape} images but the query "
            f"log for {log.num_classes} of {log.input_shape}: they do not mark the same model"
        )


def verify_claim(
    suspect: nn.Module | Target,
    mk: MarkingKey,
    vk: VerificationKey,
    key: ResponseKey,
    log: QueryLogContents,
    *,
    alpha: float = DEFAULT_ALPHA,
    eps: float = DEFAULT_EPS,
) -> tuple[TestedVerification, CombinedClaim]:
    """The trigger mark (every commitment checked) and the response mark of ``suspect``, and the claim
    from both at ``alpha``. Call :func:`check_claim` first to refuse bad inputs before any query."""
    check_claim(mk, log, alpha=alpha, eps=eps)
    trigger = verify_tests(suspect, mk, vk, test="either", alpha=alpha, eps=eps)
    response = verify_response(
        as_target(suspect),
        key,
        list(log.logged),
        num_classes=log.num_classes,
        input_shape=log.input_shape,
        alpha=alpha,
    )
    return trigger, combine(trigger.evidence, response, alpha=alpha, label_free=trigger.label_free)


__all__ = [
    "MARKS",
    "RESPONSE_ASSUMES",
    "CombinedClaim",
    "QueryLogContents",
    "check_claim",
    "combine",
    "read_query_log",
    "response_piece",
    "verify_claim",
]
