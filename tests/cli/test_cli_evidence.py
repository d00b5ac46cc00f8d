"""``verify --lineage OWNER --contrast OWNER``: one claim from the trigger mark, the weights and the siblings,
through the command line on real Fashion-MNIST (tiny models: the tests check the claim's bookkeeping)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import Registry, register_receipt, run

from backmark.cli.main import main
from backmark.data import ImageDataset

TINY = ["--train-subset", "1500", "--test-subset", "300", "--epochs", "1", "--width", "4", "-q"]


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory, fashion: ImageDataset) -> Path:
    """A key, a marked model with 2 siblings (marked.pt, marked.pt.siblings/) and an innocent model."""
    root = tmp_path_factory.mktemp("evidence")
    keygen = ["keygen", "--out", str(root / "key"), "--classes", "10", "--shape", "1x28x28", "--size", "30"]
    assert main([*keygen, "--seed", "3", "-q"]) == 0
    embed = ["embed", "--key", str(root / "key"), "--data", "fashion-mnist", "--arch", "cnn"]
    embed += ["--out", str(root / "marked.pt")]
    assert main([*embed, "--siblings", "2", "--seed", "5", "--triggers-per-batch", "10", *TINY]) == 0
    train = ["train", "--data", "fashion-mnist", "--out", str(root / "innocent.pt"), "--seed", "11"]
    assert main([*train, *TINY]) == 0
    return root


def _verify(owner: Path, suspect: Path, *extra: str) -> list[str]:
    return [
        "verify", "--key", str(owner / "key"), "--model", str(suspect), "--lineage", str(owner / "marked.pt"),
        "--contrast", str(owner / "marked.pt"), "--data", "fashion-mnist", "--probes", "2000", *extra,
    ]  # fmt: skip


@pytest.mark.timeout(300)
def test_the_marked_model_is_shown_by_all_four_pieces(
    owner: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *_verify(owner, owner / "marked.pt", "--json"))
    doc = json.loads(out)
    assert code == 0 and doc["verified"] is True and doc["alpha"] == 1e-6
    assert doc["pieces"] == ["labels", "label-free", "lineage", "contrast"] and doc["level"] == 2.5e-7
    ev = doc["evidence"]
    assert ev["lineage"]["verified"] is True and ev["lineage"]["log10_p_value"] < -20
    assert ev["contrast"]["rate"] == 1.0 and ev["contrast"]["rank"] == 1 and ev["contrast"]["models"] == 3
    for name in doc["pieces"]:
        assert ev[name]["level"] == 2.5e-7 and ev[name]["assumption"] and ev[name]["decisive"] is True
    assert "matches" not in doc and doc["p_value"] <= 4 * min(ev[n]["p_value"] for n in doc["pieces"])


@pytest.mark.timeout(300)
def test_an_innocent_model_is_not_shown_and_each_assumption_is_printed(
    owner: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *_verify(owner, owner / "innocent.pt"))
    assert code == 1 and out.startswith("NOT VERIFIED") and "no piece passed" in out, out
    for name in ("labels:", "label-free:", "lineage:", "contrast:"):
        assert f"  {name}" in out
    assert out.count("  assumes:") == 4 and "lineage: exact under H0" in out and "1/2 + delta" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--data", "fashion-mnist"], "--data applies with --contrast"),
        (["--queried", "fashion-mnist"], "--queried applies with --contrast"),
        (["--contrast", "OWNER"], "--contrast needs --data"),
        (["--contrast", "OWNER", "--data", "fashion-mnist", "--probes", "0"], "--probes must be at least 1"),
        (["--contrast", "OWNER", "--data", "fashion-mnist", "--delta", "0.6"], "delta"),
    ],
)
def test_bad_evidence_options_are_one_line_errors(
    owner: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    argv = [a.replace("OWNER", str(owner / "marked.pt")) for a in argv]
    base = ["verify", "--key", str(owner / "key"), "--model", str(owner / "marked.pt")]
    code, out, err = run(capsys, *base, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err


@pytest.mark.timeout(300)
def test_the_contrast_piece_reports_when_the_sibling_record_was_registered(
    owner: Path, registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receipt = register_receipt(capsys, registry, tmp_path, "owner", "--siblings", str(owner / "marked.pt"))
    doc = json.loads(receipt.read_text())
    checked = ["--siblings-receipt", str(receipt), "--siblings-registry", registry.url]
    code, out, _ = run(capsys, *_verify(owner, owner / "marked.pt", *checked, "--json"))
    contrast = json.loads(out)["evidence"]["contrast"]
    assert code == 0 and contrast["registered_at"] == doc["timestamp"]
    assert contrast["registry_entry"] == doc["entry"] and contrast["registry_owner"] == doc["owner"]
    code, out, _ = run(capsys, *_verify(owner, owner / "marked.pt", *checked))
    assert code == 0 and f"sibling record registered {doc['timestamp']} (entry {doc['entry']})" in out
    other = register_receipt(capsys, registry, tmp_path, "other", "--siblings-digest", "e" * 64)
    for extra, needle in [
        (["--siblings-receipt", str(other), "--siblings-registry", registry.url], "registers sibling record"),
        (["--siblings-receipt", str(receipt)], "needs --siblings-registry URL"),
        (["--siblings-registry", registry.url], "--siblings-registry checks a --siblings-receipt"),
    ]:
        code, out, err = run(capsys, *_verify(owner, owner / "marked.pt", *extra))
        assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, (extra, err)
    base = ["verify", "--key", str(owner / "key"), "--model", str(owner / "marked.pt")]
    code, _, err = run(capsys, *base, "--siblings-receipt", str(receipt))
    assert code == 2 and "--siblings-receipt applies with --contrast OWNER" in err


def test_lineage_needs_the_weights(owner: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["verify", "--key", str(owner / "key"), "--target", f"ckpt:{owner / 'marked.pt'}"]
    code, out, err = run(capsys, *argv, "--lineage", str(owner / "marked.pt"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "--lineage compares weights" in err
