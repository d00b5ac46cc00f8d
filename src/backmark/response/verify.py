"""Verify the response mark: ask the suspect about the logged altered images, count the altered labels.

Null hypothesis: the suspect never learned from the marked answers. Each altered label was chosen by the
MAC uniformly among the C - 1 classes other than the served model's answer, independently of the suspect,
so the suspect's answer equals it with probability at most 1/(C - 1) per image, independently across
distinct images; the match count is then stochastically at most Binomial(n, 1/(C - 1)) and the exact tail
is a valid p-value (derivation in docs/response-mark.md).
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
    """``matches`` of ``n`` logged images answered with the altered label; exact test at ``null_rate``."""

    key_id: str
    matches: int
    n: int
    num_classes: int
    alpha: float
    threshold: int
    p_value: float
    log10_p_value: float
    verified: bool
    # Reported beside the decision: the exact test conditioned on the images where the suspect's answer
    # differs from the served model's own (only there can it match; docs/response-mark.md, section 2).
    disagreements: int | None = None
    conditional_p_value: float | None = None

    @property
    def null_rate(self) -> Fraction:
        return Fraction(1, self.num_classes - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "matches": self.matches,
            "n": self.n,
            "num_classes": self.num_classes,
            "null_rate": float(self.null_rate),
            "null_rate_exact": f"1/{self.num_classes - 1}",
            "match_rate": self.matches / self.n,
            "alpha": self.alpha,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "log10_p_value": self.log10_p_value,
            "verified": self.verified,
            "disagreements": self.disagreements,
            "conditional_p_value": self.conditional_p_value,
        }


def decide_response(
    matches: int, *, n: int, num_classes: int, alpha: float, key_id: str, disagreements: int | None = None
) -> ResponseEvidence:
    """The exact one-sided binomial test of ``matches`` out of ``n`` at null rate 1/(num_classes - 1).

    With ``disagreements`` (how many of the ``n`` answers differ from the served model's own) the
    conditional p-value P[Binomial(disagreements, 1/(C-1)) >= matches] is reported too.
    """
    rate = Fraction(1, num_classes - 1)
    exact = rate_p_value_exact(matches, n, rate)
    k = rate_threshold(n, rate, alpha)
    log_p = math.log10(exact.numerator) - math.log10(exact.denominator) if exact else -math.inf
    return ResponseEvidence(
        key_id=key_id,
        matches=matches,
        n=n,
        num_classes=num_classes,
        alpha=alpha,
        threshold=k,
        p_value=float(exact),
        log10_p_value=log_p,
        verified=matches >= k,
        disagreements=disagreements,
        conditional_p_value=(
            None
            if disagreements is None
            else 1.0
            if disagreements == 0
            else float(rate_p_value_exact(matches, disagreements, rate))
        ),
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
    disagreements = int((answers != served).sum())
    return decide_response(
        matches,
        n=len(logged),
        num_classes=num_classes,
        alpha=alpha,
        key_id=key.key_id,
        disagreements=disagreements,
    )
