"""Running attacks on a really marked model and measuring them black-box; the report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backmark.attacks import FTLL, RTLL, Extraction, MagnitudePruning, OODDetector, Transfer
from backmark.embed import Trained
from backmark.keys import MarkingKey
from backmark.study import AttackOutcome, Baseline, ThreatSplit, Trial, run_attacks, write_report

REQUIRED = (
    "attack",
    "params",
    "test_acc_before",
    "test_acc_after",
    "evidence",
    "p_value",
    "verified",
    "alpha",
)


@pytest.fixture(scope="module")
def outcomes(marked: Trained, key: MarkingKey, split: ThreatSplit) -> tuple[Baseline, list[AttackOutcome]]:
    attacks = [
        FTLL(epochs=2, lr=0.01),
        RTLL(epochs=1, lr=0.01),
        MagnitudePruning(sparsity=0.97),
        OODDetector(),
        Transfer(epochs=1),
        Extraction(epochs=1),
    ]
    test = (split.owner.test_x, split.owner.test_y)
    return run_attacks(Trial(marked.model, key, key.verification_key(), split.attacker_data, test), attacks)


def test_the_baseline_is_the_marked_model(outcomes: tuple[Baseline, list[AttackOutcome]]) -> None:
    baseline, results = outcomes
    assert baseline.evidence.verified and baseline.evidence.matches == 20
    assert baseline.evidence.threshold == 12  # n=20, C=10, alpha/2 = 5e-7: each test of the mark's claim
    # the label-free test on the same answers: names kept, so as many hits as matches
    assert baseline.label_free is not None and baseline.label_free.matches == 20
    assert baseline.label_free.verified and baseline.to_dict()["evidence"]["label-free"]["hits"] == 20
    assert all(o.test_acc_before == baseline.test_acc for o in results)


def test_every_outcome_is_consistent_and_serialisable(outcomes: tuple[Baseline, list[AttackOutcome]]) -> None:
    _, results = outcomes
    for o in results:
        e = o.evidence
        assert e.verified == (e.matches >= e.threshold) and e.n == 20 and e.alpha == 5e-7
        cheap = o.task != "original" or o.test_acc_before - o.test_acc_after <= 0.05 + 1e-12
        assert o.verified == (e.verified or bool(o.label_free and o.label_free.verified))
        assert o.removed == (not o.verified and cheap)  # the baseline is verified
        assert e.match_rate == e.matches / e.n and o.seconds >= 0
        entry = json.loads(json.dumps(o.to_dict()))
        assert all(field in entry for field in (*REQUIRED, "removed", "seconds"))
        # the JSON entry is flat: the evidence's numbers beside the attack's, as report.json always had them
        # the mark's claim on top, each test's figures under its own name: no field contradicts another
        labels = entry["evidence"]["labels"]
        assert (
            labels["matches"] == e.matches and labels["threshold"] == e.threshold and "matches" not in entry
        )
        assert entry["verified"] == o.verified and entry["alpha"] == 1e-6 and labels["level"] == 5e-7
        f = o.label_free
        assert f is not None and f.n == 20 and f.alpha == 5e-7
        assert entry["evidence"]["label-free"]["hits"] == f.matches
        with pytest.raises(TypeError):  # a frozen outcome holds no dict that could still change
            o.params["seed"] = 99  # type: ignore[index]


def test_fine_tuning_records_every_epoch(outcomes: tuple[Baseline, list[AttackOutcome]]) -> None:
    ftll = outcomes[1][0]
    assert [p.epoch for p in ftll.history] == [0, 1, 2]
    assert ftll.history[0].match_rate == 1.0 and ftll.head_swapped is None


def test_rtll_reports_the_swapped_head_apart(outcomes: tuple[Baseline, list[AttackOutcome]]) -> None:
    baseline, results = outcomes
    rtll = results[1]
    assert rtll.head_swapped is not None
    # RTLL changes only the output layer: with the original one back, the model is the marked model again
    assert rtll.head_swapped.matches == baseline.evidence.matches
    assert rtll.evidence.matches < rtll.head_swapped.matches


def test_accuracy_bought_removal_does_not_count(outcomes: tuple[Baseline, list[AttackOutcome]]) -> None:
    pruned = outcomes[1][2]
    assert pruned.test_acc_after < pruned.test_acc_before - 0.05
    assert not pruned.removed


def test_the_ood_detector_hides_the_triggers_at_little_cost(
    outcomes: tuple[Baseline, list[AttackOutcome]],
) -> None:
    ood = outcomes[1][3]
    assert not ood.evidence.verified and ood.removed
    assert ood.test_acc_before - ood.test_acc_after < 0.03


def test_transfer_serves_a_new_task(outcomes: tuple[Baseline, list[AttackOutcome]]) -> None:
    transfer = outcomes[1][4]
    assert transfer.task.startswith("new task: classes 5-9")
    assert transfer.head_swapped is not None and transfer.history[0].epoch == 1
    assert transfer.test_acc_after > 0.3  # 5 classes: chance is 20%


def test_write_report_files(tmp_path: Path, outcomes: tuple[Baseline, list[AttackOutcome]]) -> None:
    baseline, results = outcomes
    report = write_report(tmp_path, baseline, results, alpha=1e-6, chance=0.1, model="m.pt", key_id="k")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["entries"][0]["attack"] == "ftll" and len(saved["entries"]) == len(results)
    assert saved["machine"]["torch"] and saved["baseline"]["test_acc"] == baseline.test_acc
    text = (tmp_path / "report.md").read_text()
    assert "| labels p | label-free p | mark verified |" in text
    assert "not black-box" in text and "Removed the watermark" in text and "ood-detector" in text
    assert {"summary.png", "epochs.png"} <= set(report.figures) and saved == json.loads(
        json.dumps(report.to_dict(), default=str)
    )
    assert all((tmp_path / name).stat().st_size > 1000 for name in report.figures)


def test_extraction_verdict_fits_every_mix_of_outcomes(
    outcomes: tuple[Baseline, list[AttackOutcome]],
) -> None:
    from dataclasses import replace

    from backmark.study.attack_report import extraction_verdict

    base = outcomes[1][0]
    below = replace(base.evidence, verified=False)
    free_below = None if base.label_free is None else replace(base.label_free, verified=False)
    removed = replace(base, attack="extract", evidence=below, label_free=free_below, removed=True)
    costly = replace(removed, removed=False)  # below the threshold, but over the accuracy budget
    kept = replace(base, attack="extract", evidence=replace(below, verified=True), removed=False)
    assert extraction_verdict([removed, removed]) == "removed the watermark"
    assert "below the threshold in every run" in extraction_verdict([removed, costly])
    assert "verified in 1 of 2" in extraction_verdict([kept, removed])


def test_extraction_curve_starts_with_the_fresh_student(
    outcomes: tuple[Baseline, list[AttackOutcome]],
) -> None:
    extraction = outcomes[1][-1]
    assert extraction.attack == "extract"
    assert [p.epoch for p in extraction.history] == [1]  # no epoch 0: the student is not the marked model
