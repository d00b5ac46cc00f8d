"""``train --siblings`` and ``backmark contrast`` through the command line, on real Fashion-MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import Registry, register_receipt, run
from sqlalchemy import text

from backmark.cli.main import main
from backmark.constants import CONTRAST_DELTA, CONTRAST_SCORE_DELTA
from backmark.data import ImageDataset

TINY = ["--train-subset", "1500", "--test-subset", "300", "--epochs", "1", "--width", "4", "-q"]


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory, fashion: ImageDataset) -> Path:
    """A clean model trained with 2 siblings; the deployed one at marked.pt."""
    root = tmp_path_factory.mktemp("contrast")
    argv = ["train", "--data", "fashion-mnist", "--out", str(root / "m.pt"), "--siblings", "2", "--seed", "5"]
    assert main([*argv, *TINY]) == 0
    return root / "m.pt"


def test_train_with_siblings_writes_the_record_and_refuses_to_overwrite(
    family: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = family.with_name("m.pt.siblings")
    record = json.loads((folder / "siblings.json").read_text())
    assert len(record["models"]) == 3 and record["models"][0]["seed"] == 5
    assert sorted(p.name for p in folder.glob("model-*.pt")) == sorted(
        f"model-{i}.pt" for i in range(3) if i != record["deployed"]
    )
    code, _, err = run(
        capsys, "train", "--data", "fashion-mnist", "--out", str(family), "--siblings", "2", *TINY
    )
    assert code == 2 and err.count("\n") == 1 and "force" in err


def test_contrast_shows_the_deployed_model_itself(family: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["contrast", "--owner", str(family), "--data", "fashion-mnist", "--probes", "3000", "--json"]
    code, out, _ = run(capsys, *argv, "--model", str(family))
    report = json.loads(out)
    assert code == 0 and report["verified"] is True and report["p_value"] <= report["alpha"]
    assert report["probe_test"]["rate"] == 1.0 and report["rank_test"]["rank"] == 1
    assert "assumption" in report and report["challenge"]["nonce"] == report["nonce"]
    # the 2 siblings taken as suspects (each against the deployed model and the other), before the suspect
    rates = report["probe_test"]["sibling_rates"]
    assert len(rates) == 2 and all(0 <= r <= 1 for r in rates)
    bound = 0.5 + report["probe_test"]["delta"]
    assert report["probe_test"]["delta"] == CONTRAST_DELTA
    assert report["probe_test"]["margin_holds_for_siblings"] == all(r <= bound for r in rates)
    # a model file's scores are read too: the same scores as the deployed model's on every probe
    scores = report["probe_test"]["scores"]
    assert scores["rate"] == 1.0 and scores["sides_siblings"] == 0 and scores["delta"] == CONTRAST_SCORE_DELTA
    assert "score p-value" in report["assumption"]
    code, out, _ = run(capsys, *argv[:-1], "--model", str(family))
    assert code == 0 and "siblings:   as suspects, the 2 siblings side with the deployed model" in out
    assert "scores:     closer to the deployed model's on" in out


def test_queried_images_give_a_third_count(family: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["contrast", "--owner", str(family), "--data", "fashion-mnist", "--probes", "2000"]
    argv += ["--queried", "fashion-mnist", "--model", str(family)]
    code, out, _ = run(capsys, *argv, "--json")
    report = json.loads(out)
    queried = report["probe_test"]["queried"]
    assert (
        code == 0 and queried["rate"] == 1.0 and queried["probes"] == 2000 and queried["sides_siblings"] == 0
    )
    assert queried["delta"] == CONTRAST_DELTA and "queried p-value" in report["assumption"]
    assert "these 3 tests" in report["assumption"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "queried:    on 2000 probes from the queried images" in out
    assert "combined:   p-value" in out and "of the 3 tests' times 3" in out
    code, _, err = run(capsys, *argv[:-4], "--queried", "imagefolder:/nonexistent", "--model", str(family))
    assert code == 2 and err.count("\n") == 1 and "imagefolder" in err


def test_shifted_probes_ask_more_inputs_than_the_pool_holds(
    family: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["contrast", "--owner", str(family), "--data", "fashion-mnist", "--probes", "3000", "--json"]
    code, out, _ = run(capsys, *argv, "--kind", "shifted", "--model", str(family))
    report = json.loads(out)
    probes = report["probe_test"]
    assert code == 0 and report["verified"] is True and probes["kind"] == "shifted"
    # 3,000 draws from 10,000 test images x 5 moves repeat about 90 inputs (from the images alone: 400)
    assert 2800 < probes["queries"] < 3000


def test_contrast_does_not_flag_a_sibling(family: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = family.with_name("m.pt.siblings")
    sibling = sorted(folder.glob("model-*.pt"))[0]
    argv = ["contrast", "--owner", str(family), "--data", "fashion-mnist", "--probes", "3000"]
    code, out, _ = run(capsys, *argv, "--model", str(sibling))
    assert code == 1 and out.startswith("NOT SHOWN") and "assumes:" in out and "score p-value" in out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--delta", "0.7"], "--delta must lie in [0, 0.5)"),
        (["--alpha", "2"], "alpha"),
        (["--probes", "0"], "--probes"),
    ],
)
def test_bad_options_are_one_line_errors(
    family: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    argv = ["contrast", "--owner", str(family), "--data", "fashion-mnist", "--model", str(family), *extra]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err


def test_an_owner_without_siblings_is_told_how(
    tmp_path: Path, family: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lone = tmp_path / "lone.pt"
    lone.write_bytes(family.read_bytes())
    code, _, err = run(
        capsys, "contrast", "--owner", str(lone), "--data", "fashion-mnist", "--model", str(lone)
    )
    assert code == 2 and err.count("\n") == 1 and "--siblings K" in err


def test_zero_siblings_is_an_error_not_a_plain_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "z.pt"
    code, _, err = run(
        capsys, "train", "--data", "fashion-mnist", "--out", str(out), "--siblings", "0", *TINY
    )
    assert code == 2 and err.count("\n") == 1 and "--siblings must lie in 1..64" in err and not out.exists()


def test_contrast_reports_when_the_record_was_registered(
    family: Path, registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receipt = register_receipt(capsys, registry, tmp_path, "owner", "--siblings", str(family))
    doc = json.loads(receipt.read_text())
    argv = ["contrast", "--owner", str(family), "--data", "fashion-mnist", "--model", str(family)]
    argv += ["--receipt", str(receipt), "--registry", registry.url]
    code, out, err = run(capsys, *argv, "--probes", "3000", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["registered_at"] == doc["timestamp"] and report["siblings_digest"] == doc["siblings_digest"]
    assert report["registration"]["entry"] == doc["entry"] and report["registration"]["owner"] == doc["owner"]
    code, out, _ = run(capsys, *argv, "--probes", "200")
    [line] = [line for line in out.splitlines() if "registered:" in line]
    assert doc["timestamp"] in line and f"entry {doc['entry']} of {registry.url}" in line
    code, out, _ = run(capsys, *argv[:-4], "--probes", "200", "--json")
    assert json.loads(out)["registered_at"] is None and json.loads(out)["registration"] is None


def test_a_receipt_that_does_not_date_this_record_is_a_one_line_error(
    family: Path, registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = register_receipt(capsys, registry, tmp_path, "other", "--siblings-digest", "e" * 64)
    bare = register_receipt(capsys, registry, tmp_path, "bare")
    mine = register_receipt(capsys, registry, tmp_path, "mine", "--siblings", str(family))
    doc = json.loads(mine.read_text())
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({**doc, "timestamp": "2001-01-01T00:00:00.000000Z"}))
    gone = register_receipt(capsys, registry, tmp_path, "gone", "--siblings", str(family))
    with registry.store.engine.begin() as conn:  # the log cut back to before this entry, head and all
        seq = json.loads(gone.read_text())["entry"]
        conn.execute(text("DELETE FROM registry_entries WHERE seq = :s"), {"s": seq})
    argv = ["contrast", "--owner", str(family), "--data", "fashion-mnist", "--model", str(family)]
    cases = [
        (
            ["--receipt", str(other), "--registry", registry.url],
            "registers sibling record eeeeeeeeeeeeeeee, not",
        ),
        (["--receipt", str(bare), "--registry", registry.url], "registers no sibling record"),
        (["--receipt", str(edited), "--registry", registry.url], "is not a receipt of registry"),
        (["--receipt", str(gone), "--registry", registry.url], f"no longer holds its entry {seq}"),
        (["--receipt", str(tmp_path / "none.json"), "--registry", registry.url], "none.json"),
        (["--receipt", str(mine)], "needs --registry URL"),
        (["--registry", registry.url], "--registry checks a --receipt"),
    ]
    for extra, needle in cases:
        code, out, err = run(capsys, *argv, *extra)
        assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, (extra, err)
