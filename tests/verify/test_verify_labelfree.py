"""The label-free test: exact under the null, verifies a marked model whose classes are permuted."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run
from torch import nn

from backmark.constants import VERIFY_TESTS
from backmark.errors import BackmarkError
from backmark.export import export_model
from backmark.keys import MarkingKey, save_key_pair
from backmark.verify import verify
from backmark.verify.labelfree import (
    TESTS,
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
    assert label_free_hits(labels, labels, 10) == 100  # classes not renamed: every trigger a hit
    wrong = [(y + 1) % 10 if i % 4 == 0 else y for i, y in enumerate(labels)]
    assert label_free_hits(wrong, labels, 10) >= 60
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
    assert doc["test"] == "either" and doc["alpha"] == 0.01 and doc["level"] == 0.005
    assert doc["pieces"] == ["labels", "label-free"] and doc["passed"] == ["label-free"]
    ev = doc["evidence"]
    assert ev["labels"]["matches"] == 0 and ev["labels"]["verified"] is False
    free = ev["label-free"]
    # answers 1, 2 are new and unclaimed: predicted as themselves (misses); 0 is claimed by then: 2 (a hit)
    assert free["hits"] == result.label_free.matches == 8
    assert free["threshold"] == threshold(10, 3, 0.005) and free["level"] == 0.005
    assert free["threshold"] == 8 and free["verified"] is True and doc["verified"] is True
    assert free["decisive"] is True and "Binomial(n, 1/3)" in free["assumption"]
    # no field contradicts another: the claim's p-value is the smaller one doubled
    assert doc["p_value"] == pytest.approx(min(1.0, 2 * free["p_value"]))
    assert "matches" not in doc and "threshold" not in doc
    alone = decide_tests(answers, labels, num_classes=3, test="labels", alpha=0.01, eps=0.1, key_id="k")
    shown = alone.to_dict()
    assert shown["verified"] is False and shown["pieces"] == ["labels"]
    reported = shown["evidence"]["label-free"]
    assert reported["decisive"] is False and "verified" not in reported and reported["verified_alone"] is True
    same = decide_tests(labels, labels, num_classes=3, test="either", alpha=0.01, eps=0.1, key_id="k")
    assert same.label_free.matches == same.labels.evidence.matches == 10  # names kept: as many hits
    with pytest.raises(ValueError, match="test must be one of"):
        decide_tests(answers, labels, num_classes=3, test="both", alpha=0.01, eps=0.1, key_id="k")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cli_models(
    tmp_path_factory: pytest.TempPathFactory, key100: MarkingKey, make_lookup: MakeLookup
) -> dict[str, str]:
    """The key saved as a folder, and TorchScript lookup models: permuted, 12-class transfer, clean."""
    root = tmp_path_factory.mktemp("labelfree-cli")
    save_key_pair(key100, root / "key")
    _, labels = key100.trigger_tensors()
    answers = {
        "permuted": ((labels + 1) % 10, 10),
        "transferred": (7 + labels // 2, 12),
        "clean": (torch.from_numpy(np.random.default_rng(4).integers(0, 10, 100)), 10),
    }
    paths = {"key": str(root / "key")}
    for name, (said, outputs) in answers.items():
        model = make_lookup(key100, said, outputs=outputs)
        export_model(model, root / f"{name}.ts", format="torchscript", input_shape=key100.input_shape)
        paths[name] = f"torchscript:{root / name}.ts"
    return paths


@pytest.mark.timeout(120)
def test_cli_verify_test_label_free_exit_codes_and_json(
    cli_models: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    key = ["verify", "--key", cli_models["key"]]
    code, out, _ = run(capsys, *key, "--target", cli_models["permuted"], "--test", "label-free", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["verified"] is True and doc["test"] == "label-free"
    labels, free = doc["evidence"]["labels"], doc["evidence"]["label-free"]
    assert labels["verified_alone"] is False and labels["matches"] == 0 and labels["decisive"] is False
    assert doc["alpha"] == doc["level"] == 1e-6 and doc["pieces"] == ["label-free"]
    assert {
        "hits",
        "n",
        "num_classes",
        "level",
        "threshold",
        "p_value",
        "log10_p_value",
        "verified",
        "assumption",
    } <= set(free)
    assert free["n"] == 100 and free["num_classes"] == 10 and free["threshold"] == 28 and free["hits"] >= 90
    assert free["verified"] is True and free["level"] == 1e-6 and free["log10_p_value"] < -60
    code, out, _ = run(capsys, *key, "--target", cli_models["permuted"], "--test", "either", "--json")
    doc = json.loads(out)
    free = doc["evidence"]["label-free"]
    assert code == 0 and free["level"] == doc["level"] == 5e-7 and doc["alpha"] == 1e-6
    assert doc["evidence"]["labels"]["threshold"] == free["threshold"] == threshold(100, 10, 5e-7)
    code, out, _ = run(capsys, *key, "--target", cli_models["permuted"], "--test", "labels", "--json")
    assert code == 1 and json.loads(out)["verified"] is False
    assert json.loads(out)["evidence"]["label-free"]["verified_alone"] is True  # reported, not decisive
    # the default decision catches renamed classes: both tests, each at alpha/2
    code, out, _ = run(capsys, *key, "--target", cli_models["permuted"], "--json")
    doc = json.loads(out)
    assert code == 0 and doc["test"] == "either" and doc["verified"] is True
    assert doc["passed"] == ["label-free"] and doc["evidence"]["labels"]["verified"] is False
    for test in ("labels", "label-free", "either"):
        code, out, _ = run(capsys, *key, "--target", cli_models["clean"], "--test", test, "--json")
        assert code == 1 and json.loads(out)["verified"] is False


@pytest.mark.timeout(120)
def test_cli_verify_label_free_takes_another_class_count(
    cli_models: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    key = ["verify", "--key", cli_models["key"], "--target", cli_models["transferred"]]
    code, out, _ = run(capsys, *key, "--test", "label-free")
    assert code == 0 and out.startswith("VERIFIED:") and "label-free passed at alpha 1e-06" in out
    assert "  label-free:    " in out and "passes" in out
    code, out, _ = run(capsys, *key, "--test", "either", "-q")
    assert code == 0 and out == ""
    code, _, err = run(capsys, *key, "--test", "labels")
    assert code == 2 and "answered label" in err and len(err.strip().splitlines()) == 1


@pytest.mark.timeout(60)
def test_cli_test_with_a_response_key_is_one_line_error(
    cli_models: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys,
        "verify",
        "--key",
        cli_models["key"],
        "--response-key",
        str(tmp_path / "none.rkey"),
        "--query-log",
        str(tmp_path / "none.db"),
        "--target",
        cli_models["permuted"],
        "--test",
        "either",
    )
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--test, --lineage and --contrast apply to the trigger mark (--key)" in err


@pytest.mark.timeout(60)
def test_the_command_line_offers_every_test() -> None:
    assert VERIFY_TESTS == TESTS
