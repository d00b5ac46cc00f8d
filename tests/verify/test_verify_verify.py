"""Verify: commitments first, then label-only queries, then the exact binomial decision."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, generate_key
from backmark.verify import (
    DEFAULT_ALPHA,
    DEFAULT_EPS,
    Evidence,
    VerificationResult,
    decide,
    trigger_accuracy,
    verify,
)
from backmark.verify.stats import p_value, p_value_exact, threshold

MakeLookup = Callable[..., nn.Module]


class FixedAnswers:
    """A black-box target that returns prepared labels and counts its calls."""

    def __init__(self, answers: torch.Tensor) -> None:
        self.answers = answers
        self.calls = 0

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.answers


def check_consistent(result: VerificationResult, mk: MarkingKey) -> None:
    """Every field of a result agrees with the others and with an independent computation."""
    n, c = mk.n, mk.num_classes
    assert (result.evidence.n, result.evidence.num_classes) == (n, c)
    assert result.key_id == mk.verification_key().key_id
    assert 0 <= result.evidence.matches <= n
    assert result.evidence.match_rate == result.evidence.matches / n
    assert result.evidence.p_value == pytest.approx(
        float(
            sum(
                Fraction(math.comb(n, i) * (c - 1) ** (n - i), c**n)
                for i in range(result.evidence.matches, n + 1)
            )
        ),
        rel=1e-12,
    )
    assert result.evidence.threshold == threshold(n, c, result.evidence.alpha)
    assert result.verified == (result.evidence.matches >= result.evidence.threshold)
    assert result.verified == (
        p_value_exact(result.evidence.matches, n, c) <= Fraction(result.evidence.alpha)
    )
    assert result.evidence.log10_p_value == pytest.approx(
        math.log10(result.evidence.p_value) if result.evidence.p_value > 0 else result.evidence.log10_p_value,
        abs=1e-9,
    )
    assert result.paper_rule_verified == (n - result.evidence.matches <= round(result.eps * n, 9))
    flat = {"key_id", "eps", "paper_rule_verified", "match_rate"} | {
        f.name for f in dataclasses.fields(Evidence)
    }
    assert result.to_dict() == {
        **{f.name: getattr(result.evidence, f.name) for f in dataclasses.fields(Evidence)},
        "key_id": result.key_id,
        "match_rate": result.evidence.match_rate,
        "eps": result.eps,
        "paper_rule_verified": result.paper_rule_verified,
    }
    assert set(result.to_dict()) == flat and "commitments_ok" not in flat


def test_a_marked_model_is_verified(key100: MarkingKey, make_lookup: MakeLookup) -> None:
    _, labels = key100.trigger_tensors()
    result = verify(make_lookup(key100, labels), key100, key100.verification_key())
    assert result.evidence.matches == 100 and result.evidence.match_rate == 1.0
    assert result.evidence.p_value == pytest.approx(1e-100, rel=1e-12)
    assert result.evidence.log10_p_value == pytest.approx(-100.0)
    assert result.evidence.alpha == DEFAULT_ALPHA == 1e-6 and result.evidence.threshold == 28
    assert result.verified and result.paper_rule_verified and result.eps == DEFAULT_EPS
    check_consistent(result, key100)
    assert trigger_accuracy(make_lookup(key100, labels), key100) == 1.0


@pytest.mark.parametrize("constant", range(10))
def test_a_constant_model_matches_about_n_over_c(
    key100: MarkingKey, make_lookup: MakeLookup, constant: int
) -> None:
    answers = torch.full((100,), constant, dtype=torch.int64)
    result = verify(make_lookup(key100, answers), key100, key100.verification_key())
    expected = int((key100.labels == constant).sum())
    assert result.evidence.matches == expected
    assert abs(result.evidence.matches - 10) <= 12  # n/C = 10, sd 3; the binomial p-value is what matters
    assert not result.verified and not result.paper_rule_verified
    assert result.evidence.p_value == pytest.approx(p_value(expected, 100, 10), rel=1e-12)
    check_consistent(result, key100)


def test_constant_models_partition_the_triggers(key100: MarkingKey, make_lookup: MakeLookup) -> None:
    total = 0
    for constant in range(10):
        answers = torch.full((100,), constant, dtype=torch.int64)
        total += verify(make_lookup(key100, answers), key100, key100.verification_key()).evidence.matches
    assert total == 100


def test_unmarked_models_are_not_verified(key100: MarkingKey, make_lookup: MakeLookup) -> None:
    rng = np.random.default_rng(0)
    vk = key100.verification_key()
    for _ in range(20):
        answers = torch.from_numpy(rng.integers(0, 10, 100))
        result = verify(make_lookup(key100, answers), key100, vk)
        assert not result.verified and result.evidence.p_value > 1e-6
        check_consistent(result, key100)
    # a model that answers every trigger wrongly
    _, labels = key100.trigger_tensors()
    result = verify(make_lookup(key100, (labels + 1) % 10), key100, vk)
    assert result.evidence.matches == 0 and result.evidence.p_value == 1.0 and not result.verified


def answers_with_matches(mk: MarkingKey, k: int) -> torch.Tensor:
    """Key labels on the first k triggers, a wrong label on the rest."""
    _, labels = mk.trigger_tensors()
    answers = (labels + 1) % mk.num_classes
    answers[:k] = labels[:k]
    return answers


@pytest.mark.parametrize("alpha", [1e-2, 1e-3, 1e-6, 1e-9])
def test_the_decision_flips_exactly_at_the_threshold(
    key100: MarkingKey, make_lookup: MakeLookup, alpha: float
) -> None:
    vk = key100.verification_key()
    k = threshold(100, 10, alpha)
    below = verify(make_lookup(key100, answers_with_matches(key100, k - 1)), key100, vk, alpha=alpha)
    at = verify(make_lookup(key100, answers_with_matches(key100, k)), key100, vk, alpha=alpha)
    assert (below.evidence.matches, at.evidence.matches) == (k - 1, k)
    assert not below.verified and below.evidence.p_value > alpha
    assert at.verified and at.evidence.p_value <= alpha
    check_consistent(below, key100)
    check_consistent(at, key100)


def test_alpha_changes_the_threshold(key100: MarkingKey, make_lookup: MakeLookup) -> None:
    model = make_lookup(key100, answers_with_matches(key100, 25))
    vk = key100.verification_key()
    loose = verify(model, key100, vk, alpha=1e-2)
    strict = verify(model, key100, vk, alpha=1e-9)
    assert (loose.evidence.threshold, strict.evidence.threshold) == (19, 33)
    assert (
        loose.evidence.matches == strict.evidence.matches == 25
        and loose.evidence.p_value == strict.evidence.p_value
    )
    assert loose.verified and not strict.verified
    assert trigger_accuracy(model, key100) == 0.25


def test_eps_is_reported_beside_the_test(key100: MarkingKey, make_lookup: MakeLookup) -> None:
    model = make_lookup(key100, answers_with_matches(key100, 85))
    vk = key100.verification_key()
    strict, loose = verify(model, key100, vk, eps=0.1), verify(model, key100, vk, eps=0.2)
    assert strict.verified and loose.verified  # the binomial decision does not depend on eps
    assert not strict.paper_rule_verified and loose.paper_rule_verified
    with pytest.raises(BackmarkError):
        verify(model, key100, vk, alpha=0.0)
    with pytest.raises(BackmarkError):
        verify(model, key100, vk, eps=1.0)


def test_labels_outside_the_key_are_refused(key100: MarkingKey, make_lookup: MakeLookup) -> None:
    # an 11-output model that answers class 10 on every trigger
    model = make_lookup(key100, torch.full((100,), 10), outputs=11)
    with pytest.raises(BackmarkError, match="answered label 10 but the key has 10 classes"):
        verify(model, key100, key100.verification_key())
    answers = torch.zeros(100, dtype=torch.int64)
    answers[7] = -3
    with pytest.raises(BackmarkError, match="answered label -3"):
        verify(FixedAnswers(answers), key100, key100.verification_key())


@pytest.mark.parametrize(
    "answers",
    [
        torch.zeros(99, dtype=torch.int64),
        torch.zeros((100, 10), dtype=torch.int64),
        torch.zeros(100, dtype=torch.float32),
        torch.zeros(100, dtype=torch.bool),
    ],
)
def test_answers_of_the_wrong_form_are_refused(key100: MarkingKey, answers: torch.Tensor) -> None:
    with pytest.raises(BackmarkError) as info:
        verify(FixedAnswers(answers), key100, key100.verification_key())
    assert "\n" not in str(info.value)


def test_black_box_targets_are_accepted(key100: MarkingKey) -> None:
    _, labels = key100.trigger_tensors()
    target = FixedAnswers(labels.to(torch.int32))
    result = verify(target, key100, key100.verification_key())
    assert target.calls == 1 and result.evidence.matches == 100 and result.verified


def test_mismatched_keys_are_refused_before_the_model_is_queried(key100: MarkingKey) -> None:
    _, labels = key100.trigger_tensors()
    target = FixedAnswers(labels)
    other = generate_key(num_classes=10, input_shape=(1, 8, 8), size=100, kind="noise")
    with pytest.raises(BackmarkError, match="does not open"):
        verify(target, key100, other.verification_key())
    changed = labels.numpy().copy()
    changed[41] = (changed[41] + 1) % 10
    forged = dataclasses.replace(key100, labels=changed)
    with pytest.raises(BackmarkError, match="trigger label 41 does not open"):
        verify(FixedAnswers(torch.from_numpy(changed)), forged, key100.verification_key())
    assert target.calls == 0


@pytest.mark.parametrize(
    ("alpha", "eps", "needle"),
    [
        (2.0, 0.1, "alpha must lie strictly between 0 and 1, got 2.0"),
        (math.nan, 0.1, "alpha must lie strictly between 0 and 1, got nan"),
        (0.0, 0.1, "alpha must lie"),
        (math.inf, 0.1, "alpha must lie"),
        (1e-3, 5.0, "eps must lie in [0, 1), got 5.0"),
        (1e-3, math.nan, "eps must lie in [0, 1), got nan"),
        (1e-3, -0.1, "eps must lie"),
        (1e-101, 0.1, "at alpha 1e-101 no model can be verified with 100 triggers of 10 classes"),
    ],
)
def test_bad_decision_arguments_are_refused_before_any_query(
    key100: MarkingKey, alpha: float, eps: float, needle: str
) -> None:
    """A verification bound to fail must not show the suspect a single trigger."""
    target = FixedAnswers(key100.trigger_tensors()[1])
    with pytest.raises(BackmarkError, match=re.escape(needle)):
        verify(target, key100, key100.verification_key(), alpha=alpha, eps=eps)
    assert target.calls == 0
    assert verify(target, key100, key100.verification_key(), alpha=1e-100).verified  # 100 matches reach it


class Declares(FixedAnswers):
    """A target that declares what it fits, as servers and exports do; records what verify asked."""

    def __init__(self, answers: torch.Tensor, fits: bool) -> None:
        super().__init__(answers)
        self.fits = fits
        self.asked: list[tuple[tuple[int, int, int], int, int]] = []

    def check_fits(self, *, input_shape: tuple[int, int, int], num_classes: int) -> None:
        self.asked.append((input_shape, num_classes, self.calls))
        if not self.fits:
            raise BackmarkError("declares 3x32x32 inputs")


def test_the_target_is_checked_against_the_key_before_the_first_trigger(key100: MarkingKey) -> None:
    labels = key100.trigger_tensors()[1]
    unfit = Declares(labels, fits=False)
    with pytest.raises(BackmarkError, match="declares 3x32x32 inputs"):
        verify(unfit, key100, key100.verification_key())
    assert unfit.calls == 0
    fit = Declares(labels, fits=True)
    assert verify(fit, key100, key100.verification_key()).verified
    assert fit.asked == [((1, 8, 8), 10, 0)] and fit.calls == 1  # checked once, before predict
    other = generate_key(num_classes=10, input_shape=(1, 8, 8), size=100, kind="noise")
    with pytest.raises(BackmarkError, match="does not open"):  # the key pair is checked before the target
        verify(fit, key100, other.verification_key())
    assert len(fit.asked) == 1


def test_a_real_model_answers_in_eval_mode_and_keeps_its_mode() -> None:
    from backmark.models import create_model

    seed = hashlib.sha256(b"real model").digest()
    mk = generate_key(num_classes=10, input_shape=(1, 28, 28), size=40, kind="noise", seed=seed)
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28), width=4, hidden=8, dropout=0.9)
    model.train()
    first = verify(model, mk, mk.verification_key())
    second = verify(model, mk, mk.verification_key())
    assert model.training and all(m.training for m in model.modules())  # restored
    assert first.evidence.matches == second.evidence.matches  # dropout was off while answering
    assert not first.verified
    check_consistent(first, mk)


def test_a_model_for_another_input_shape_is_a_backmark_error(key100: MarkingKey) -> None:
    from backmark.models import create_model

    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28), width=4, hidden=8)
    with pytest.raises(BackmarkError, match="1x8x8 trigger images") as info:
        verify(model, key100, key100.verification_key())
    assert "\n" not in str(info.value)


def test_decide_matches_the_table() -> None:
    result = decide(21, n=100, num_classes=10, alpha=1e-3, eps=0.1, key_id="k")
    assert result.evidence.threshold == 21 and result.verified and not result.paper_rule_verified
    assert result.evidence.p_value == pytest.approx(p_value(21, 100, 10))
    result = decide(20, n=100, num_classes=10, alpha=1e-3, eps=0.1, key_id="k")
    assert not result.verified
    tiny = decide(1000, n=1000, num_classes=100, alpha=1e-6, eps=0.1, key_id="k")
    assert (
        tiny.evidence.p_value == 0.0
        and tiny.evidence.log10_p_value == pytest.approx(-2000.0)
        and tiny.verified
    )
    for bad in (-1, 101):
        with pytest.raises(BackmarkError):
            decide(bad, n=100, num_classes=10, alpha=1e-3, eps=0.1, key_id="k")


def test_false_positive_rate_of_random_models_is_below_alpha() -> None:
    # simulate many unmarked models: matches ~ Binomial(20, 1/10); at alpha = 0.05 the rate stays below 5%
    rng = np.random.default_rng(1)
    seed = hashlib.sha256(b"fpr").digest()
    mk = generate_key(num_classes=10, input_shape=(1, 8, 8), size=20, kind="noise", seed=seed)
    vk = mk.verification_key()
    trials = 2000
    accepted = sum(
        verify(FixedAnswers(torch.from_numpy(rng.integers(0, 10, 20))), mk, vk, alpha=0.05).verified
        for _ in range(trials)
    )
    exact = float(p_value_exact(threshold(20, 10, 0.05), 20, 10))  # about 0.043
    assert exact <= 0.05
    assert abs(accepted / trials - exact) < 4 * math.sqrt(exact * (1 - exact) / trials)
