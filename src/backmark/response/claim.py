"""One claim from both marks: the trigger set in the weights and the response mark in the served answers.

Each test gives a valid p-value under its own null hypothesis, and the suspect is innocent only if both
nulls hold. The claim is decided by :mod:`backmark.verify.decision`: verified when either mark verifies at
``alpha / 2`` (Bonferroni; the combined p-value is ``min(1, 2 * min(p_trigger, p_response))``). By the
union bound, an innocent suspect is verified with probability at most alpha / 2 + alpha / 2 = alpha,
whatever the dependence between the two tests: no independence is assumed. Fisher's method would need the
two p-values to be independent under the null and is weakest exactly in the case this claim is for, one
mark removed (p near 1) and the other intact; Bonferroni then costs only a factor 2 on the surviving
mark's p-value (docs/response-mark.md, section 4).

:func:`read_query_log` reads what ``backmark serve`` logged for a response key; :func:`verify_claim` checks
every input, queries the suspect for both marks and decides (``verify --key --response-key``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from torch import nn

from backmark.constants import DEFAULT_ALPHA, DEFAULT_EPS
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, VerificationKey
from backmark.response.key import ResponseKey
from backmark.response.querylog import LoggedQuery, ResponseLog
from backmark.response.verify import ResponseEvidence, verify_response
from backmark.targets import Target, as_target
from backmark.verify import Evidence, VerificationResult, check_decision, verify
from backmark.verify.decision import Decision, Piece, decide_any, piece_level
from backmark.verify.stats import rate_threshold, threshold

MARKS = 2  # the claim's pieces of evidence: the trigger mark and the response mark


@dataclass(frozen=True)
class CombinedClaim:
    """Both marks' evidence at ``alpha``, each decided at ``alpha / 2``; verified if either holds."""

    alpha: float
    trigger: Evidence
    response: ResponseEvidence
    trigger_threshold: int  # matches out of trigger.n needed at alpha / 2
    response_threshold: int  # matches out of response.tested needed at alpha / 2

    @property
    def trigger_verified(self) -> bool:
        return self.trigger.matches >= self.trigger_threshold

    @property
    def response_verified(self) -> bool:
        return self.response.tested > 0 and self.response.matches >= self.response_threshold

    @property
    def decision(self) -> Decision:
        return decide_any(
            self.alpha,
            [
                Piece("trigger", self.trigger.p_value, self.trigger_verified),
                Piece("response", self.response.p_value, self.response_verified),
            ],
        )

    @property
    def verified(self) -> bool:
        return self.decision.verified

    @property
    def p_value(self) -> float:
        return self.decision.p_value

    @property
    def marks(self) -> tuple[str, ...]:
        """The marks that verified at alpha / 2."""
        return self.decision.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "rule": "Bonferroni: each mark at alpha/2, verified if either",
            "verified": self.verified,
            "p_value": self.p_value,
            "marks_verified": list(self.marks),
            "trigger": {**self.trigger.to_dict(), "threshold_half_alpha": self.trigger_threshold},
            "response": {**self.response.to_dict(), "threshold_half_alpha": self.response_threshold},
        }


def combine(trigger: Evidence, response: ResponseEvidence, *, alpha: float) -> CombinedClaim:
    """The combined claim at ``alpha`` from evidence computed at any alpha (thresholds are recomputed)."""
    half = piece_level(alpha, MARKS)
    t = threshold(trigger.n, trigger.null_classes, half)
    r = rate_threshold(response.tested, Fraction(1, response.num_classes - 1), half) if response.tested else 1
    return CombinedClaim(
        alpha=alpha, trigger=trigger, response=response, trigger_threshold=t, response_threshold=r
    )


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
) -> tuple[VerificationResult, CombinedClaim]:
    """The trigger mark (every commitment checked) and the response mark of ``suspect``, and the claim
    from both at ``alpha``. Call :func:`check_claim` first to refuse bad inputs before any query."""
    check_claim(mk, log, alpha=alpha, eps=eps)
    trigger = verify(suspect, mk, vk, alpha=alpha, eps=eps)
    response = verify_response(
        as_target(suspect),
        key,
        list(log.logged),
        num_classes=log.num_classes,
        input_shape=log.input_shape,
        alpha=alpha,
    )
    return trigger, combine(trigger.evidence, response, alpha=alpha)


__all__ = [
    "MARKS",
    "CombinedClaim",
    "QueryLogContents",
    "check_claim",
    "combine",
    "read_query_log",
    "verify_claim",
]
