"""``backmark attack`` and ``backmark reproduce`` end to end on small real data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cli_helpers import run

import backmark.study
from backmark.cli.main import main
from backmark.embed import Trained
from backmark.keys import MarkingKey, generate_key, save_key_pair
from backmark.models import save_checkpoint
from backmark.study import Settings, reproduce
from backmark.verify.stats import threshold

SUBSET = ["--train-subset", "3000", "--test-subset", "600", "--seed", "0"]  # the fixtures' split


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, marked: Trained, key: MarkingKey) -> Path:
    root = tmp_path_factory.mktemp("attack-cli")
    save_key_pair(key, root / "key")
    save_checkpoint(root / "marked.pt", marked.model, marked.info)
    return root


def test_attack_writes_the_report_and_figures(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = files / "report"
    attacks = "ftll:epochs=2,prune:sparsity=0.5/0.9,extract:epochs=1"
    code, stdout, _ = run(
        capsys, "attack", "--model", str(files / "marked.pt"), "--key", str(files / "key"),
        "--data", "fashion-mnist", "--attacks", attacks, "--out", str(out), "--json", "-q", *SUBSET,
    )  # fmt: skip
    assert code == 0
    entries = json.loads(stdout)
    assert [e["attack"] for e in entries] == ["ftll", "prune", "prune", "extract"]
    for e in entries:
        for field in ("attack", "params", "test_acc_before", "test_acc_after", "evidence", "p_value"):
            assert field in e
        assert e["pieces"] == ["labels", "label-free"] and "match_rate" in e["evidence"]["labels"]
        assert isinstance(e["verified"], bool) and isinstance(e["removed"], bool) and e["seconds"] >= 0
    assert entries[0]["test_acc_before"] > 0.7 and entries[0]["verified"]  # FTLL at lr 0.001 leaves it
    report = json.loads((out / "report.json").read_text())
    assert report["entries"] == entries and report["attacker_fraction"] == pytest.approx(1 / 3)
    assert "| extract (arch=same, epochs=1) | labels |" in (out / "report.md").read_text()
    for name in ("summary.png", "epochs.png", "prune-sparsity.png"):
        assert (out / name).stat().st_size > 1000


def test_attack_list_prints_every_attack(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "attack", "--attacks", "list")
    assert code == 0
    for name in ("ftll", "rtal", "transfer", "fine-prune", "extract", "jpeg", "ood-detector", "ensemble"):
        assert f"\n{name} " in "\n" + out
    for name in ("weight-shift", "regularize", "distill", "adv-train", "launder"):
        assert f"\n{name} " in "\n" + out
    assert "[labels]" in out and "options: epochs=20 lr=0.001 seed=0" in out


@pytest.mark.parametrize(
    ("attacks", "message"),
    [
        ("ftal,nope", "unknown attack 'nope'; choose from: adv-train, distill, ensemble, extract"),
        ("quantize:bits=40", "bits must lie in 1..16, got 40"),
        ("jpeg:level=3", "KEY one of: seed, quality"),
    ],
)
def test_bad_attacks_are_one_line_errors(
    files: Path, capsys: pytest.CaptureFixture[str], attacks: str, message: str
) -> None:
    code, out, err = run(capsys, "attack", "--model", str(files / "marked.pt"), "--attacks", attacks)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_a_model_that_does_not_fit_the_key_is_refused(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_key_pair(
        generate_key(num_classes=5, input_shape=(1, 28, 28), size=10, seed=b"\x02" * 32), tmp_path / "k5"
    )
    code, _, err = run(
        capsys, "attack", "--model", str(files / "marked.pt"), "--key", str(tmp_path / "k5"),
        "--data", "fashion-mnist", "--attacks", "ftll", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "10-class model" in err and "key is for 5 classes" in err
    code, _, err = run(capsys, "attack", "--attacks", "ftll", "--model", str(files / "marked.pt"))
    assert code == 2 and "attack needs --key, --data, --out" in err


def test_reproduce_cli_passes_its_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake(out: Path, **kwargs: Any) -> Any:
        seen.update(kwargs, out=out)
        return SimpleNamespace(seconds=1.0)

    monkeypatch.setattr(backmark.study, "reproduce", fake)
    argv = ["reproduce", "--fast", "--out", str(tmp_path / "r"), "--results", str(tmp_path / "r.md")]
    assert main([*argv, "--finetune-epochs", "3", "-q"]) == 0
    assert seen["settings"] == replace(Settings.fast(), finetune_epochs=3)
    assert main([*argv, "--search", "none", "-q"]) == 0
    assert seen["settings"] == replace(Settings.fast(), search="none")
    assert seen["results"] == tmp_path / "r.md" and seen["data_spec"] == "fashion-mnist"
    assert main([*argv, "--kind", "heldout", "-q"]) == 0
    assert seen["settings"] == replace(Settings.fast(), kind="heldout")


@pytest.mark.parametrize(
    ("kind", "message"),
    [("folder", "reproduce makes its own key"), ("squares", "unknown trigger kind 'squares'")],
)
def test_reproduce_refuses_a_key_kind_it_cannot_make(
    kind: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "reproduce", "--fast", "--kind", kind, "--out", str(tmp_path / "r"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_reproduce_with_blend_triggers_decides_at_their_null(tmp_path: Path) -> None:
    tiny = replace(
        Settings.fast(), train_size=1500, test_size=300, key_size=20, epochs=2, triggers_per_batch=16,
        finetune_epochs=1, large_lrs=(0.1,), sparsities=(0.9,), quant_bits=(2,), extraction_epochs=1,
        response_rate=None, search="none", kind="blend", siblings=0,
    )  # fmt: skip
    summary = reproduce(tmp_path / "run", settings=tiny, command="backmark reproduce --kind blend")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["null_classes"] == 8 and saved["settings"]["kind"] == "blend"
    text = (tmp_path / "run" / "results.md").read_text()
    assert "20 blend triggers (averages of two of the owner's training images" in text
    assert "among the 8 classes that are neither (chance 1/8)" in text and "(chance is 2)" in text
    k = threshold(20, 8, 5e-7)  # each of the mark's two tests at alpha/2
    assert (
        summary.models[1].evidence.null_classes == 8 and f"at least {k} of 20 matches or label-free" in text
    )
    assert summary.models[1].evidence.verified  # the FromScratch model learned its blends
    for baseline, outcomes in summary.runs.values():
        assert baseline.evidence.null_classes == 8
        assert all(o.evidence.null_classes == 8 for o in outcomes)


def saved_claim_keys(tmp_path: Path) -> set[str]:
    """The pieces of evidence of the first attack's claim in the FromScratch model's report.json."""
    report = json.loads((tmp_path / "run" / "from-scratch" / "report.json").read_text())
    return set(report["entries"][0]["claim"]["evidence"])


def test_reproduce_on_a_tiny_subset_writes_the_results(tmp_path: Path) -> None:
    tiny = Settings(
        train_size=1500, test_size=300, key_size=20, epochs=2, triggers_per_batch=16, pretrained_epochs=4,
        finetune_epochs=1, finetune_lrs=(0.01,), large_lrs=(0.01, 0.1), large_lr_epochs=1, transfer_epochs=1,
        sparsities=(0.5, 0.9), fine_prune_epochs=1, quant_bits=(4, 2), extraction_epochs=1,
        other_arch=None, ensemble_epochs=1, overwrite_kinds=("abstract",), overwrite_epochs=1,
        overwrite_lrs=(0.05,), overwrite_count=200, rekey_triggers=20, rekey_epochs=1, unlearn_steps=4,
        unlearn_epochs=1, weight_shift_epochs=1, regularize_epochs=1, regularize_finetune_epochs=1,
        distill_epochs=1, adv_train_epochs=1, launder_steps=4, launder_epochs=1, search="cheap",
        siblings=1, contrast_probes=500,
    )  # fmt: skip
    results = tmp_path / "docs" / "results.md"
    summary = reproduce(tmp_path / "run", settings=tiny, results=results, command="backmark reproduce --tiny")
    text = results.read_text()
    for heading in ("## In short", "## The owner's models", "## Every attack on the FromScratch model"):
        assert heading in text
    assert "## The paper's fine-tuning attacks on the PreTrained model" in text and "## Compared with" in text
    assert "| clean |" in text and "| from-scratch |" in text and "| pretrained |" in text
    assert "Model extraction from top-1 labels alone" in text and "not black-box" in text
    assert "`backmark reproduce --tiny`" in text and "the paper ran 20 epochs" in text
    for line in text.splitlines():
        if line.startswith("!["):
            assert (results.parent / line.split("(")[1].rstrip(")")).is_file(), line
    assert summary.owner_size == 1000 and summary.attacker_size == 500
    # clean, marked, marked, and the FromScratch model's sibling (marked with the same key)
    assert [m.evidence.verified for m in summary.models] == [False, True, True, True]
    assert "## Ownership from every piece of evidence" in text and "| lineage p | contrast p |" in text
    assert list(summary.innocents) == ["clean"] and saved_claim_keys(tmp_path) >= {"lineage", "contrast"}
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(summary.to_dict()))
    scratch = saved["models"][1]  # flat, as before: the evidence's numbers beside the model's
    assert scratch["matches"] == summary.models[1].evidence.matches and scratch["verified"] is True
    assert set(summary.runs) == {"from-scratch", "pretrained"}
    assert (tmp_path / "run" / "from-scratch" / "report.json").is_file()
    assert (tmp_path / "run" / "models" / "pretrained.pt").is_file()
    # the response-mark study: the FromScratch model served with a response key, extracted, judged
    assert "## The response mark: extraction through the serving API" in text
    study = saved["response"]
    assert study["rate"] == 0.02 and study["queries"] == 500
    names = [r["name"] for r in study["rows"]]
    assert names[-3:] == [
        "top-1 labels, unmarked server",
        "the owner's clean model",
        "the served model itself",
    ]
    for row in study["rows"]:
        assert f"| {row['name']} | {row['what']} |" in text
        # three pieces (labels, label-free, response), each at alpha/3; every piece with lineage, contrast
        assert row["pieces"] == ["labels", "label-free", "response"]
        assert row["p_value"] == min(1.0, 3 * min(row["evidence"][k]["p_value"] for k in row["pieces"]))
        every = row["every_piece"]
        assert every["pieces"][:3] == row["pieces"] and "contrast" in every["pieces"]
    assert "| lineage p | contrast p | every piece |" in text
    served = study["rows"][-1]
    assert served["trigger"]["verified"] and served["response"]["matches"] == 0  # its own answers never match
    assert not study["rows"][-2]["response"]["verified"]  # the clean model never learned the marked answers
    assert (tmp_path / "run" / "response" / "response-key.bmrk").is_file()
    # the adaptive attackers: each cheap knob bisected on the FromScratch model, within the 5-point budget
    assert (
        "## Adaptive attackers: the strongest setting within budget" in text
        and "Adaptive attackers (" in text
    )
    assert [f["attack"] for f in saved["searches"]] == [
        "prune", "quantize", "noise", "smooth", "jpeg", "input-quantize", "ood-detector"
    ]  # fmt: skip
    for found in saved["searches"]:
        assert 1 <= len(found["tried"]) <= 4 and found["max_drop"] == 0.05
        best = next((t for t in found["tried"] if t["value"] == found["strongest_value"]), None)
        assert best is None or best["test_acc_before"] - best["test_acc_after"] <= 0.05 + 1e-12
        assert f"| {found['attack']} | {found['option']}: " in text
