"""Private verification, the paper's Verify: open every commitment, query labels, decide exactly."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from backmark.constants import DEFAULT_ALPHA, DEFAULT_EPS
from backmark.errors import BackmarkError, first_line
from backmark.keys import MarkingKey, VerificationKey, check_openings
from backmark.targets import Target, as_target, check_target
from backmark.verify.decision import piece_level
from backmark.verify.stats import (
    check_eps,
    log10_p_value,
    p_value,
    paper_rule,
    threshold,
)


@dataclass(frozen=True)
class Evidence:
    """What a model's answers on ``n`` triggers of ``num_classes`` classes show: the exact binomial test.

    ``p_value`` is P[Binomial(n, 1/null_classes) >= matches] (``log10_p_value`` stays finite where it
    underflows to 0), where ``null_classes`` is ``num_classes``, or one less for triggers whose labels
    avoid a class (``heldout``: a clean model matches each with probability at most 1/(C-1));
    ``threshold`` is the fewest matches whose p-value is at most ``alpha``; ``verified`` is
    ``matches >= threshold``. The one record of a verification's numbers: verification results, attack
    outcomes and report rows all hold one.
    """

    matches: int
    n: int
    num_classes: int
    alpha: float
    threshold: int
    p_value: float
    log10_p_value: float
    verified: bool
    null_classes: int

    @staticmethod
    def of(
        matches: int, *, n: int, num_classes: int, alpha: float, null_classes: int | None = None
    ) -> Evidence:
        """The evidence of ``matches`` out of ``n`` at ``alpha`` (null 1/``null_classes``, default C)."""
        null = num_classes if null_classes is None else null_classes
        k = threshold(n, null, alpha)
        log_p = log10_p_value(matches, n, null)
        return Evidence(
            matches=matches,
            n=n,
            num_classes=num_classes,
            alpha=alpha,
            threshold=k,
            p_value=p_value(matches, n, null),
            log10_p_value=log_p if math.isfinite(log_p) else -math.inf,
            verified=matches >= k,
            null_classes=null,
        )

    @property
    def match_rate(self) -> float:
        return self.matches / self.n

    def at(self, alpha: float) -> Evidence:
        """The same matches decided at another level (a claim of several pieces: alpha / k)."""
        return Evidence.of(
            self.matches, n=self.n, num_classes=self.num_classes, alpha=alpha, null_classes=self.null_classes
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields and ``match_rate``, JSON-ready."""
        return {**asdict(self), "match_rate": self.match_rate}


@dataclass(frozen=True)
class VerificationResult:
    """The outcome of one verification of key ``key_id``: its evidence and, beside it, the paper's rule.

    ``verified`` is the exact binomial test at ``evidence.alpha``. A verification whose commitments do not
    open never gets this far: it raises BackmarkError.
    """

    key_id: str
    evidence: Evidence
    eps: float
    paper_rule_verified: bool  # at most eps * n mismatches; reported, never decisive

    @property
    def verified(self) -> bool:
        return self.evidence.verified

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON-ready record (the ``--json`` output of ``backmark verify``)."""
        return {
            "key_id": self.key_id,
            **self.evidence.to_dict(),
            "eps": self.eps,
            "paper_rule_verified": self.paper_rule_verified,
        }


def decide(
    matches: int,
    *,
    n: int,
    num_classes: int,
    alpha: float,
    eps: float,
    key_id: str,
    null_classes: int | None = None,
) -> VerificationResult:
    """The statistical decision for ``matches`` out of ``n`` (commitments already checked)."""
    return VerificationResult(
        key_id=key_id,
        evidence=Evidence.of(matches, n=n, num_classes=num_classes, alpha=alpha, null_classes=null_classes),
        eps=eps,
        paper_rule_verified=paper_rule(matches, n, eps),
    )


def check_decision(
    *,
    n: int,
    num_classes: int,
    alpha: float,
    eps: float,
    null_classes: int | None = None,
    pieces: int = 1,
) -> None:
    """Raise BackmarkError unless a verification of ``n`` triggers of ``num_classes`` classes can succeed
    (under the null 1/``null_classes``, default 1/``num_classes``).

    ``alpha`` must lie in (0, 1) and ``eps`` in [0, 1) (NaN is refused), and ``alpha`` must not be so
    small that even ``n`` matches out of ``n`` fall short of it: such a verification would reveal the
    triggers for a result known in advance. ``pieces``: the claim's pieces of evidence, each tested at
    ``alpha / pieces`` (the message names the claim's alpha and the smallest that can succeed).
    """
    level = piece_level(alpha, pieces)  # checks alpha
    check_eps(eps)
    null = num_classes if null_classes is None else null_classes
    if threshold(n, null, level) > n:
        best = p_value(n, n, null)
        split = "" if pieces == 1 else f" (each of {pieces} pieces of evidence at alpha/{pieces})"
        raise BackmarkError(
            f"at alpha {alpha:g}{split} no model can be verified with {n} triggers of {num_classes} "
            f"classes: even {n} matches have p-value {best:.3g}; choose an alpha of at least "
            f"{best * pieces:.3g}"
        )


def query_labels(
    target: Target, images: torch.Tensor, *, num_classes: int | None, what: str, noun: str = "images"
) -> torch.Tensor:
    """``target``'s labels for ``images`` as int64 (B,), checked: one integer label per image, each in
    0..num_classes-1 (with ``num_classes`` None, any non-negative integer: the label-free test). ``what``
    names the images in the error when the model cannot answer them, ``noun`` what they are in a count.

    The one query of verify, check, trace and the response verification: a wrong answer of any kind is a
    BackmarkError, never a silently wrong match count.
    """
    try:
        answers = target.predict(images)
    except RuntimeError as exc:  # e.g. a model made for another input size than the key's
        reason = first_line(exc, limit=160)
        raise BackmarkError(
            f"the model could not answer {what} ({reason}); check that the model and the key are for the "
            "same input shape"
        ) from exc
    if answers.shape != (len(images),):
        raise BackmarkError(f"the model answered {tuple(answers.shape)} labels for {len(images)} {noun}")
    if answers.is_floating_point() or answers.is_complex() or answers.dtype == torch.bool:
        raise BackmarkError(f"the model answered {answers.dtype} values, not integer class labels")
    if num_classes is None:
        if len(answers) and int(answers.min()) < 0:
            raise BackmarkError(f"the model answered label {int(answers.min())}, not a class label")
        return answers.to(torch.int64)
    outside = answers[(answers < 0) | (answers >= num_classes)]
    if len(outside):
        raise BackmarkError(
            f"the model answered label {int(outside[0])} but the key has {num_classes} classes "
            f"(0..{num_classes - 1}); check the model fits the key"
        )
    return answers.to(torch.int64)


def verify(
    model: nn.Module | Target,
    mk: MarkingKey,
    vk: VerificationKey,
    *,
    alpha: float = DEFAULT_ALPHA,
    eps: float = DEFAULT_EPS,
) -> VerificationResult:
    """Check everything, then query ``model`` on the triggers (labels only), and decide.

    Before the first trigger is sent: ``alpha`` and ``eps`` (:func:`check_decision`), that every
    commitment in ``vk`` opens to ``mk``, and what the target declares about itself (a server's
    metadata and readiness, an export's shapes: :func:`backmark.targets.check_target`). A failed check
    raises BackmarkError and reveals no trigger; so do answers that do not fit the key (wrong count,
    labels outside the key's classes).
    """
    answers, labels = query_triggers(model, mk, vk, classes=mk.num_classes, alpha=alpha, eps=eps)
    matches = int((answers == labels).sum())
    return decide(
        matches,
        n=mk.n,
        num_classes=mk.num_classes,
        alpha=alpha,
        eps=eps,
        key_id=vk.key_id,
        null_classes=mk.null_classes,
    )


def query_triggers(
    model: nn.Module | Target,
    mk: MarkingKey,
    vk: VerificationKey,
    *,
    classes: int | None,
    alpha: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every check of a verification at ``alpha``, then one query: (answers, key labels), int64 (n,) each.

    ``classes`` is the class count the suspect must declare and answer within (None: any, for a model
    transferred to a new label set). A failed check raises BackmarkError before any trigger is sent.
    """
    check_decision(n=mk.n, num_classes=mk.num_classes, alpha=alpha, eps=eps, null_classes=mk.null_classes)
    check_openings(mk, vk)
    target = as_target(model)
    check_target(target, input_shape=mk.input_shape, num_classes=classes)
    images, labels = mk.trigger_tensors()
    shape = "x".join(map(str, mk.input_shape))
    what = f"the key's {shape} trigger images"
    return query_labels(target, images, num_classes=classes, what=what, noun="triggers"), labels


def trigger_accuracy(model: nn.Module | Target, mk: MarkingKey) -> float:
    """Fraction of triggers answered with their key label (no commitment check; for training logs)."""
    images, labels = mk.trigger_tensors()
    return float((as_target(model).predict(images) == labels).float().mean())


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_EPS",
    "Evidence",
    "VerificationResult",
    "check_decision",
    "decide",
    "query_labels",
    "query_triggers",
    "trigger_accuracy",
    "verify",
]
