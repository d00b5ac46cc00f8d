"""Verify the response mark: ask the suspect about the logged altered images, count the altered labels.

Null hypothesis: the suspect never learned from the marked answers. Each altered label was chosen by the
MAC uniformly among the C - 1 classes other than the served model's answer, independently of the suspect.
Where the suspect gives the served answer it cannot match; where it gives another answer it matches with
probability exactly 1/(C - 1), independently across distinct images. So, given which answers differ, the
match count is Binomial(tested, 1/(C - 1)) and its exact tail is the p-value (docs/response-mark.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from backmark.constants import DEFAULT_ALPHA
from backmark.errors import BackmarkError
from backmark.response.key import ResponseKey
from backmark.response.mark import ResponseMark, image_digest
from backmark.response.querylog import LoggedQuery
from backmark.targets import Target, check_target
from backmark.verify import query_labels
from backmark.verify.stats import check_alpha, rate_p_value_exact, rate_threshold


@dataclass(frozen=True)
class ResponseEvidence:
    """The response-mark test: ``matches`` altered labels among the ``tested`` logged images where the
    suspect's answer differs from the served model's own (the only images where it can match).

    The decision is the exact one-sided binomial test of ``matches`` out of ``tested`` at null rate
    1/(C-1) (docs/response-mark.md, section 2: conditionally on which answers differ, the matches are
    exactly Binomial(tested, 1/(C-1)) under the null). ``unconditional_p_value`` is the looser test over all
    ``n`` logged images at the same rate, reported for comparison.
    """

    key_id: str
    matches: int
    n: int  # logged altered images the suspect was asked about
    tested: int  # of those, where the suspect's answer differs from the served model's
    num_classes: int
    alpha: float
    threshold: int  # fewest matches out of ``tested`` with p-value at most alpha (tested + 1: impossible)
    p_value: float
    log10_p_value: float
    verified: bool
    unconditional_p_value: float

    @property
    def null_rate(self) -> Fraction:
        return Fraction(1, self.num_classes - 1)

    def threshold_at(self, level: float) -> int:
        """The fewest matches out of ``tested`` verified at ``level`` (a claim of several pieces decides
        each at alpha / k)."""
        return _threshold(self.tested, self.num_classes, level)

    def holds_at(self, level: float) -> bool:
        """Whether the test holds at ``level``: some answers were tested and enough of them match."""
        return self.tested > 0 and self.matches >= self.threshold_at(level)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "test": "conditional",
            "matches": self.matches,
            "n": self.n,
            "tested": self.tested,
            "num_classes": self.num_classes,
            "null_rate": float(self.null_rate),
            "null_rate_exact": f"1/{self.num_classes - 1}",
            "match_rate": self.matches / self.tested if self.tested else 0.0,
            "alpha": self.alpha,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "log10_p_value": self.log10_p_value,
            "verified": self.verified,
            "unconditional_p_value": self.unconditional_p_value,
        }


def _threshold(tested: int, num_classes: int, level: float) -> int:
    """Fewest matches out of ``tested`` with p-value at most ``level``; 1, never reached, without any."""
    return rate_threshold(tested, Fraction(1, num_classes - 1), level) if tested else 1


def _log10(p: Fraction) -> float:
    return math.log10(p.numerator) - math.log10(p.denominator) if p else -math.inf


def decide_response(
    matches: int, *, n: int, tested: int, num_classes: int, alpha: float, key_id: str
) -> ResponseEvidence:
    """The exact test of ``matches`` out of the ``tested`` differing answers (of ``n`` logged) at 1/(C-1).

    ``matches <= tested <= n`` (an altered label never equals the served answer). With ``tested == 0``
    the p-value is 1 and nothing is verified.
    """
    if not 0 <= matches <= tested <= n or n < 1:
        raise BackmarkError(f"need 0 <= matches <= tested <= n and n >= 1, got {matches}, {tested}, {n}")
    rate = Fraction(1, num_classes - 1)
    k = _threshold(tested, num_classes, alpha)
    exact = rate_p_value_exact(matches, tested, rate) if tested else Fraction(1)
    return ResponseEvidence(
        key_id=key_id,
        matches=matches,
        n=n,
        tested=tested,
        num_classes=num_classes,
        alpha=alpha,
        threshold=k,
        p_value=float(exact),
        log10_p_value=_log10(exact),
        verified=tested > 0 and matches >= k,
        unconditional_p_value=float(rate_p_value_exact(matches, n, rate)),
    )


def check_log(key: ResponseKey, logged: list[LoggedQuery], *, num_classes: int) -> None:
    """Refuse a log row whose digest or label the key does not reproduce (a damaged or foreign log)."""
    mark = ResponseMark(key, num_classes=num_classes)
    for row in logged:
        if image_digest(row.pixels) != row.digest:
            raise BackmarkError(f"query log row {row.digest[:12]}: the image does not match its digest")
        if mark.altered_label(row.pixels, row.served) != row.label:
            raise BackmarkError(
                f"query log row {row.digest[:12]}: the response key does not give label {row.label} "
                "for this image; the log was made with another key"
            )


def verify_response(
    target: Target,
    key: ResponseKey,
    logged: list[LoggedQuery],
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    alpha: float = DEFAULT_ALPHA,
) -> ResponseEvidence:
    """Check the log against the key, query ``target`` on the logged images (labels only), decide."""
    check_alpha(alpha)
    if not logged:
        raise BackmarkError("the query log holds no altered answer yet; nothing to verify")
    check_log(key, logged, num_classes=num_classes)
    check_target(target, input_shape=input_shape, num_classes=num_classes)
    images = torch.from_numpy(np.stack([row.pixels for row in logged]).astype(np.float32) / 255.0)
    answers = query_labels(target, images, num_classes=num_classes, what="the logged images")
    labels = torch.tensor([row.label for row in logged], dtype=torch.int64)
    served = torch.tensor([row.served for row in logged], dtype=torch.int64)
    matches = int((answers == labels).sum())
    tested = int((answers != served).sum())
    return decide_response(
        matches, n=len(logged), tested=tested, num_classes=num_classes, alpha=alpha, key_id=key.key_id
    )
