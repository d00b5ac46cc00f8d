"""The label-free test: triggers that share a key label should share an answer, whatever it is called.

The labels test (:func:`backmark.verify.verify`) counts answers equal to the key labels, so a thief who
permutes a stolen model's output classes, or retrains its head for a new label set, evades it for free.
This test needs only the answers' equality pattern. It walks the triggers in key order and, for trigger
``i``, predicts its key label from the suspect's answer ``s_i`` and the earlier triggers alone: the most
frequent key label among the earlier triggers answered ``s_i`` (ties: the smallest label), or, for an
answer not seen before, ``s_i`` itself if it is a key label that is not yet the prediction for another
answer, else the smallest label that is not (0 if every label is). A hit is a prediction equal to the key
label. So a model that answers the key labels themselves gets exactly as many hits as matches.

Under the null hypothesis (the suspect never saw the key, so its answers are independent of the key
labels, which are uniform on the C classes and independent of each other), the label of trigger ``i`` is
uniform and independent of every answer and of the earlier labels, from which the prediction is made: each
hit has probability exactly 1/C given the past, so the hit count is exactly Binomial(n, 1/C), the same
null as the labels test, decided by the same exact functions. docs/label-free.md has the derivation.

``either`` runs both tests on the same answers and verifies if either holds at alpha / 2, decided by
:mod:`backmark.verify.decision` (Bonferroni, valid however the two tests depend on each other, and they
do: they read the same answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from backmark.constants import DEFAULT_ALPHA, DEFAULT_EPS, VERIFY_TESTS, VerifyTest
from backmark.infra.readonly import readonly
from backmark.keys import MarkingKey, VerificationKey
from backmark.targets import Target
from backmark.verify import Evidence, VerificationResult, decide, query_triggers
from backmark.verify.decision import Decision, Piece, decide_any, level_for

Test = VerifyTest
TESTS = VERIFY_TESTS


def _majority(counts: list[int]) -> int:
    """The most frequent label in ``counts`` (label -> count), the smallest on a tie."""
    best = max(counts)
    return counts.index(best)


def label_free_predictions(answers: Sequence[int], labels: Sequence[int], num_classes: int) -> list[int]:
    """For each trigger ``i``, the key label predicted from ``answers[i]`` and triggers ``0..i-1`` only.

    ``answers`` may be any integers (another class count than the key's, names permuted: only which
    answers are equal matters); ``labels`` are the key labels in 0..num_classes-1, in key order.
    """
    if len(answers) != len(labels):
        raise ValueError(f"{len(answers)} answers for {len(labels)} labels")
    counts: dict[int, list[int]] = {}  # answer -> how often each key label came with it so far
    predictions = []
    for s, y in zip(answers, labels, strict=True):
        seen = counts.get(s)
        if seen is not None:
            guess = _majority(seen)
        else:  # a new answer: its own name if free (classes not renamed), else a label no answer claims
            claimed = {_majority(c) for c in counts.values()}
            free = [c for c in range(num_classes) if c not in claimed]
            guess = s if s in free else (free[0] if free else 0)
        predictions.append(guess)
        counts.setdefault(s, [0] * num_classes)[y] += 1
    return predictions


def label_free_hits(answers: Sequence[int], labels: Sequence[int], num_classes: int) -> int:
    """How many key labels :func:`label_free_predictions` predicts right: Binomial(n, 1/C) under H0."""
    predictions = label_free_predictions(answers, labels, num_classes)
    return sum(p == y for p, y in zip(predictions, labels, strict=True))


def label_free_evidence(
    answers: Sequence[int],
    labels: Sequence[int],
    *,
    num_classes: int,
    alpha: float,
    null_classes: int | None = None,
) -> Evidence:
    """The label-free test's evidence: ``matches`` is the hit count, decided exactly like the labels test
    (each hit has probability at most 1/``null_classes`` under H0: the key labels' own bound)."""
    hits = label_free_hits(answers, labels, num_classes)
    return Evidence.of(hits, n=len(labels), num_classes=num_classes, alpha=alpha, null_classes=null_classes)


def assumes(test: Test, null_classes: int) -> str:
    """What the p-value of the labels or the label-free test assumes, in words (every report says it)."""
    if test == "labels":
        what = (
            f"matches ~ Binomial(n, 1/{null_classes}): a model never marked with the key answers each trigger"
        )
        what += " with its key label with probability at most 1/" + str(null_classes)
    else:
        what = (
            f"hits ~ Binomial(n, 1/{null_classes}): each key label is then uniform given the suspect's "
            "answers and the earlier labels, so each prediction from earlier triggers hits with probability "
            f"at most 1/{null_classes} (renamed classes and a new head do not change that)"
        )
    return (
        "exact under H0 (the suspect was made without this key: the key labels were drawn uniformly, "
        f"independently of the images and the suspect, and not chosen after it): {what}"
    )


def evidence_piece(name: Test, evidence: Evidence) -> Piece:
    """``evidence`` of the labels or the label-free test as a :class:`Piece` of a claim."""
    figures = {k: v for k, v in evidence.to_dict().items() if k not in _PIECE_FIELDS}
    if name == "label-free":
        figures = {"hits": figures.pop("matches"), **figures}
    return Piece(
        name=name,
        p_value=evidence.p_value,
        verified=evidence.verified,
        assumption=assumes(name, evidence.null_classes),
        figures=readonly(figures),
        log10_p_value=evidence.log10_p_value,
    )


_PIECE_FIELDS = ("p_value", "log10_p_value", "verified", "alpha")  # the piece's own, or the claim's


def mark_decision(test: Test, labels: Evidence, label_free: Evidence | None) -> Decision:
    """The trigger mark's claim under ``test`` from both tests' evidence, each already at its level: the
    decisive tests (both under ``either``), the other one reported. The claim's alpha is the level times
    the number of decisive tests (what is left of a correction made outside, e.g. over keys or slots)."""
    pieces = {"labels": evidence_piece("labels", labels)}
    if label_free is not None:
        pieces["label-free"] = evidence_piece("label-free", label_free)
    decisive = [p for name, p in pieces.items() if test in (name, "either")]
    reported = [p for name, p in pieces.items() if test not in (name, "either")]
    return decide_any(labels.alpha * len(decisive), decisive, reported=reported)


@dataclass(frozen=True)
class TestedVerification:
    """One verification of key ``key_id`` decided by ``test`` at ``alpha``, both tests reported.

    ``labels`` is the labels test and ``label_free`` the label-free test, each at the level it is decided
    at: ``alpha``, or ``alpha / 2`` for both under ``either``. Under ``labels`` the label-free evidence is
    reported and not decisive, and the other way round under ``label-free``.
    """

    key_id: str
    test: Test
    alpha: float
    labels: VerificationResult
    label_free: Evidence

    @property
    def evidence(self) -> Evidence:
        """The labels test's figures (matches, threshold, p-value), as :class:`VerificationResult` has."""
        return self.labels.evidence

    @property
    def decision(self) -> Decision:
        """The claim of ``test``: the labels test, the label-free test, or either (each at alpha / 2)."""
        return mark_decision(self.test, self.labels.evidence, self.label_free)

    @property
    def verified(self) -> bool:
        return self.decision.verified

    def to_dict(self, decision: Decision | None = None) -> dict[str, Any]:
        """The claim on top (``verified``, ``alpha``, ``p_value``, ``test``), each test's figures under
        its own name in ``evidence`` (:meth:`backmark.verify.decision.Decision.to_dict`), and the paper's
        rule beside, never decisive. ``decision``: a claim that adds other evidence to this one's
        (:func:`backmark.claim.trigger_claim`); default :attr:`decision`."""
        return {
            "key_id": self.key_id,
            "test": self.test,
            **(decision or self.decision).to_dict(),
            "n": self.labels.evidence.n,
            "num_classes": self.labels.evidence.num_classes,
            "eps": self.labels.eps,
            "paper_rule_verified": self.labels.paper_rule_verified,
        }


def decide_tests(
    answers: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    test: Test,
    alpha: float,
    eps: float,
    key_id: str,
    null_classes: int | None = None,
) -> TestedVerification:
    """Both tests on one set of answers (int64 (n,), any non-negative labels), decided by ``test``.

    An answer outside the key's classes never equals a key label: the labels test counts it as a miss.
    ``null_classes``: the key's null (:attr:`backmark.keys.MarkingKey.null_classes`; default C).
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    level = level_for(test, alpha)
    matches = int((answers == labels).sum())
    labels_result = decide(
        matches,
        n=len(labels),
        num_classes=num_classes,
        alpha=level,
        eps=eps,
        key_id=key_id,
        null_classes=null_classes,
    )
    free = label_free_evidence(
        answers.tolist(), labels.tolist(), num_classes=num_classes, alpha=level, null_classes=null_classes
    )
    return TestedVerification(key_id=key_id, test=test, alpha=alpha, labels=labels_result, label_free=free)


def verify_tests(
    model: nn.Module | Target,
    mk: MarkingKey,
    vk: VerificationKey,
    *,
    test: Test = "either",
    alpha: float = DEFAULT_ALPHA,
    eps: float = DEFAULT_EPS,
) -> TestedVerification:
    """Like :func:`backmark.verify.verify`, decided by ``test``, with one query of the triggers.

    Every check of ``verify`` is made before the first trigger is sent, except that under ``label-free``
    and ``either`` the suspect may answer with any number of classes (a model transferred to a new label
    set): its declared class count is not checked, and any non-negative integer answer is accepted.
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    level = level_for(test, alpha)
    classes = mk.num_classes if test == "labels" else None
    answers, labels = query_triggers(model, mk, vk, classes=classes, alpha=level, eps=eps)
    return decide_tests(
        answers,
        labels,
        num_classes=mk.num_classes,
        test=test,
        alpha=alpha,
        eps=eps,
        key_id=vk.key_id,
        null_classes=mk.null_classes,
    )


def verify_label_free(
    model: nn.Module | Target, mk: MarkingKey, vk: VerificationKey, *, alpha: float = DEFAULT_ALPHA
) -> TestedVerification:
    """Verify ``model`` by the label-free test alone at ``alpha`` (the labels test reported beside it)."""
    return verify_tests(model, mk, vk, test="label-free", alpha=alpha)


__all__ = [
    "TESTS",
    "Test",
    "TestedVerification",
    "assumes",
    "decide_tests",
    "evidence_piece",
    "label_free_evidence",
    "label_free_hits",
    "label_free_predictions",
    "mark_decision",
    "verify_label_free",
    "verify_tests",
]
