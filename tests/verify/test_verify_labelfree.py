"""The label-free test: exact under the null, verifies a marked model whose classes are permuted."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from backmark.errors import BackmarkError
from backmark.keys import MarkingKey
from backmark.verify import verify
from backmark.verify.labelfree import (
    decide_tests,
    label_free_evidence,
    label_free_hits,
    label_free_predictions,
    verify_label_free,
    verify_tests,
)
from backmark.verify.stats import p_value, threshold

MakeLookup = Callable[..., nn.Module]


@pytest.mark.timeout(60)
def test_hit_count_is_exactly_binomial_for_every_answer_pattern() -> None:
    """n = 4, C = 3: for each of the 256 answer vectors over 4 answer values, the hit count over all 81
    equally likely label vectors is distributed exactly as Binomial(4, 1/3)."""
    n, c = 4, 3
    binomial = [math.comb(n, k) * (c - 1) ** (n - k) for k in range(n + 1)]
    for answers in itertools.product(range(4), repeat=n):
        counts = Counter(label_free_hits(answers, y, c) for y in itertools.product(range(c), repeat=n))
        assert [counts[k] for k in range(n + 1)] == binomial, answers


@pytest.mark.timeout(60)
def test_a_prediction_uses_only_earlier_labels() -> None:
    rng = np.random.default_rng(0)
    answers = rng.integers(0, 5, 30).tolist()
    labels = rng.integers(0, 10, 30).tolist()
    base = label_free_predictions(answers, labels, 10)
    for i in range(30):
        changed = labels[:i] + [(v + 3) % 10 for v in labels[i:]]
        assert label_free_predictions(answers, changed, 10)[: i + 1] == base[: i + 1]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pattern", ["uniform", "clustered", "constant"])
def test_suspects_independent_of_the_labels_are_verified_at_most_alpha_often(pattern: str) -> None:
    """3000 suspects whose answers ignore the key labels: the rejection rate is the binomial tail at the
    threshold (at most alpha = 0.05), within sampling error."""
    n, c, alpha, trials = 20, 10, 0.05, 3000
    rng = np.random.default_rng({"uniform": 1, "clustered": 2, "constant": 3}[pattern])
    k = threshold(n, c, alpha)
    exact = p_value(k, n, c)
    assert exact <= alpha
    verified = 0
    for _ in range(trials):
        labels = rng.integers(0, c, n).tolist()
        if pattern == "uniform":
            answers = rng.integers(0, c, n).tolist()
        elif pattern == "clustered":
            answers = rng.integers(0, 3, n).tolist()
        else:
            answers = [7] * n
        verified += label_free_evidence(answers, labels, num_classes=c, alpha=alpha).verified
    rate = verified / trials
    sd = math.sqrt(exact * (1 - exact) / trials)
    assert rate <= alpha + 4 * sd
    assert abs(rate - exact) <= 4 * sd


@pytest.mark.timeout(60)
def test_a_relabelled_answer_pattern_is_found() -> None:
    """A perfect model under a permutation: every trigger after each answer's first is a hit."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 10, 100).tolist()
    perm = [3, 7, 0, 9, 1, 8, 2, 6, 4, 5]
    answers = [perm[y] for y in labels]
    hits = label_free_hits(answers, labels, 10)
    assert hits >= 100 - len(set(labels))
    assert label_free_hits(labels, labels, 10) >= 100 - len(set(labels))
    # answers in another class count (a transfer), merged pairs of labels: still far above chance
    merged = [100 + y // 2 for y in labels]
    assert label_free_hits(merged, labels, 10) > 40


@pytest.mark.timeout(120)
def test_a_permuted_marked_model_evades_labels_but_not_label_free(
    key100: MarkingKey, make_lookup: MakeLookup
) -> None:
    vk = key100.verification_key()
    _, labels = key100.trigger_tensors()
    permuted = make_lookup(key100, (labels + 1) % 10)  # a derangement of the classes: no label kept
    assert not verify(permuted, key100, vk).verified
    assert verify(permuted, key100, vk).evidence.matches == 0
    free = verify_label_free(permuted, key100, vk)
    assert free.verified and free.test == "label-free"
    assert free.label_free.matches >= 90 and free.label_free.log10_p_value < -60
    assert not free.labels.verified
    either = verify_tests(permuted, key100, vk, test="either")
    assert either.verified and either.labels.evidence.alpha == either.label_free.alpha == 0.5e-6
    labels_only = verify_tests(permuted, key100, vk, test="labels")
    assert not labels_only.verified and labels_only.label_free.verified  # reported, not decisive


@pytest.mark.timeout(120)
def test_a_transferred_model_with_other_classes_is_measured(
    key100: MarkingKey, make_lookup: MakeLookup
) -> None:
    """A 12-class suspect whose answers merge key labels in pairs: the labels test refuses its answers,
    the label-free test and ``either`` take them."""
    vk = key100.verification_key()
    _, labels = key100.trigger_tensors()
    transferred = make_lookup(key100, 7 + labels // 2, outputs=12)
    with pytest.raises(BackmarkError, match="answered label"):
        verify(transferred, key100, vk)
    with pytest.raises(BackmarkError, match="answered label"):
        verify_tests(transferred, key100, vk, test="labels")
    free = verify_label_free(transferred, key100, vk)
    assert free.verified and free.label_free.matches > 40
    either = verify_tests(transferred, key100, vk, test="either")
    assert either.verified and not either.labels.verified


@pytest.mark.timeout(120)
def test_a_clean_model_is_not_verified_by_any_test(key100: MarkingKey, make_lookup: MakeLookup) -> None:
    vk = key100.verification_key()
    answers = torch.from_numpy(np.random.default_rng(9).integers(0, 10, 100))
    clean = make_lookup(key100, answers)
    for test in ("labels", "label-free", "either"):
        result = verify_tests(clean, key100, vk, test=test)  # type: ignore[arg-type]
        assert not result.verified
        assert result.label_free.p_value > 1e-3


@pytest.mark.timeout(60)
def test_the_record_holds_both_tests() -> None:
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    answers = (labels + 1) % 3
    result = decide_tests(answers, labels, num_classes=3, test="either", alpha=0.01, eps=0.1, key_id="k")
    doc = result.to_dict()
    assert doc["test"] == "either" and doc["claim_alpha"] == 0.01 and doc["alpha"] == 0.005
    assert doc["matches"] == 0 and doc["labels_verified"] is False
    free = doc["label_free"]
    assert free["matches"] == result.label_free.matches == 10  # new answers take unclaimed labels in order
    assert free["threshold"] == threshold(10, 3, 0.005) and free["alpha"] == 0.005
    assert free["threshold"] == 8 and free["verified"] is True and doc["verified"] is True
    with pytest.raises(ValueError, match="test must be one of"):
        decide_tests(answers, labels, num_classes=3, test="both", alpha=0.01, eps=0.1, key_id="k")  # type: ignore[arg-type]
