"""One claim from both marks: the trigger set in the weights and the response mark in the served answers.

Each test gives a valid p-value under its own null hypothesis, and the suspect is innocent only if both
nulls hold. The claim is verified when either mark verifies at ``alpha / 2`` (Bonferroni; the combined
p-value is ``min(1, 2 * min(p_trigger, p_response))``). By the union bound, an innocent suspect is
verified with probability at most alpha / 2 + alpha / 2 = alpha, whatever the dependence between the two
tests: no independence is assumed. Fisher's method would need the two p-values to be independent under
the null and is weakest exactly in the case this claim is for, one mark removed (p near 1) and the other
intact; Bonferroni then costs only a factor 2 on the surviving mark's p-value (docs/response-mark.md,
section 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from backmark.response.verify import ResponseEvidence
from backmark.verify import Evidence
from backmark.verify.stats import rate_threshold, threshold


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
    def verified(self) -> bool:
        return self.trigger_verified or self.response_verified

    @property
    def p_value(self) -> float:
        return min(1.0, 2 * min(self.trigger.p_value, self.response.p_value))

    @property
    def marks(self) -> tuple[str, ...]:
        """The marks that verified at alpha / 2."""
        return tuple(
            name
            for name, ok in (("trigger", self.trigger_verified), ("response", self.response_verified))
            if ok
        )

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
    half = alpha / 2
    t = threshold(trigger.n, trigger.null_classes, half)
    r = rate_threshold(response.tested, Fraction(1, response.num_classes - 1), half) if response.tested else 1
    return CombinedClaim(
        alpha=alpha, trigger=trigger, response=response, trigger_threshold=t, response_threshold=r
    )
