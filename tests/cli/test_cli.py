"""The command line end to end: keygen, train, embed, verify, tampering, exit codes, the demo."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run

from backmark.cli.main import main
from backmark.data import ImageDataset

SUBSET = ["--train-subset", "3000", "--test-subset", "500"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, fashion: ImageDataset) -> Path:
    """A key, a clean model and a FromScratch-marked model, made once through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    key = root / "key"
    assert (
        main(
            [
                "keygen",
                "--out",
                str(key),
                "--classes",
                "10",
                "--shape",
                "1x28x28",
                "--size",
                "30",
                "--seed",
                "3",
                "-q",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--data",
                "fashion-mnist",
                "--arch",
                "cnn",
                "--epochs",
                "1",
                "--out",
                str(root / "clean.pt"),
                "--seed",
                "1",
                "-q",
                *SUBSET,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "embed",
                "--seed",
                "0",
                "--key",
                str(key),
                "--data",
                "fashion-mnist",
                "--arch",
                "cnn",
                "--epochs",
                "3",
                "--triggers-per-batch",
                "10",
                "--out",
                str(root / "marked.pt"),
                "-q",
                *SUBSET,
            ]
        )
        == 0
    )
    return root


def test_keygen_writes_a_private_marking_key_and_a_public_vk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "keygen",
        "--out",
        str(tmp_path / "k"),
        "--classes",
        "10",
        "--shape",
        "1x28x28",
        "--size",
        "12",
        "--json",
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["n"] == 12 and len(summary["digest"]) == 64
    mk = tmp_path / "k" / "marking-key.bmk"
    assert stat.S_IMODE(os.stat(mk).st_mode) == 0o600
    vk = json.loads((tmp_path / "k" / "verification-key.json").read_text())
    assert vk["digest"] == summary["digest"] and "labels" not in vk
    # never overwritten without --force
    code, _, err = run(
        capsys, "keygen", "--out", str(tmp_path / "k"), "--classes", "10", "--shape", "1x28x28"
    )
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    code, _, _ = run(
        capsys,
        "keygen",
        "--out",
        str(tmp_path / "k"),
        "--classes",
        "10",
        "--shape",
        "1x28x28",
        "--size",
        "12",
        "--force",
        "-q",
    )
    assert code == 0
    assert json.loads((tmp_path / "k" / "verification-key.json").read_text())["digest"] != summary["digest"]


def test_verify_marked_model_exits_0_with_the_json_fields(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "verify", "--key", str(workspace / "key"), "--model", str(workspace / "marked.pt"), "--json"
    )
    assert code == 0
    result = json.loads(out)
    for field in ("n", "num_classes", "p_value", "alpha", "level", "verified", "evidence", "passed"):
        assert field in result
    for field in ("matches", "match_rate", "threshold", "p_value", "verified", "assumption"):
        assert field in result["evidence"]["labels"]
    assert result["verified"] and "commitments_ok" not in result and result["n"] == 30
    labels = result["evidence"]["labels"]
    assert labels["matches"] == 30 and result["p_value"] < 1e-20 and result["test"] == "either"
    # n=30, C=10, each test at alpha/2 = 5e-7 (P[X>=14] = 3.1e-7 <= 5e-7 < P[X>=13] = 2.3e-6)
    assert labels["threshold"] == 14 and result["evidence"]["label-free"]["threshold"] == 14


def test_verify_clean_model_exits_1(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "verify", "--key", str(workspace / "key"), "--model", str(workspace / "clean.pt")
    )
    assert code == 1
    assert out.startswith("NOT VERIFIED")


def test_tampered_keys_are_refused_with_exit_2(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, offset in (("verification-key.json", 300), ("marking-key.bmk", -500)):
        bad = tmp_path / name.replace(".", "-")
        bad.mkdir()
        for f in ("verification-key.json", "marking-key.bmk"):
            (bad / f).write_bytes((workspace / "key" / f).read_bytes())
        data = bytearray((bad / name).read_bytes())
        data[offset] = ord("0") if data[offset] != ord("0") else ord("1")
        (bad / name).write_bytes(bytes(data))
        code, out, err = run(capsys, "verify", "--key", str(bad), "--model", str(workspace / "marked.pt"))
        assert code == 2, name
        assert out == "" and len(err.strip().splitlines()) == 1
        assert "changed" in err or "corrupt" in err


def test_pretrained_embed_from_checkpoint(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_ckpt = workspace / "pre.pt"
    code, out, _ = run(
        capsys,
        "embed",
        "--seed",
        "0",
        "--key",
        str(workspace / "key"),
        "--data",
        "fashion-mnist",
        "--from",
        str(workspace / "clean.pt"),
        "--epochs",
        "6",
        "--triggers-per-batch",
        "10",
        "--out",
        str(out_ckpt),
        "--json",
        "-q",
        *SUBSET,
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["mode"] == "pretrained" and summary["trigger_acc"] == 1.0
    assert run(capsys, "verify", "--key", str(workspace / "key"), "--model", str(out_ckpt), "-q")[0] == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["verify", "--key", "/nonexistent", "--model", "x.pt"], "not found"),
        (["keygen", "--out", "K", "--classes", "10", "--shape", "28x28"], "CxHxW"),
        (["keygen", "--out", "K", "--classes", "1", "--shape", "1x28x28"], "at least 2"),
        (["train", "--data", "nosuch", "--out", "m.pt"], "fashion-mnist"),
        (
            [
                "train",
                "--data",
                "fashion-mnist",
                "--arch",
                "vgg99",
                "--out",
                "m.pt",
                "--epochs",
                "1",
                "--train-subset",
                "100",
                "--test-subset",
                "100",
            ],
            "choose from",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str],
    needle: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fashion: ImageDataset,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_wrong_class_count_model_is_refused(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        capsys,
        "keygen",
        "--out",
        str(tmp_path / "k100"),
        "--classes",
        "100",
        "--shape",
        "1x28x28",
        "--size",
        "10",
        "-q",
    )
    argv = ["verify", "--key", str(tmp_path / "k100"), "--model", str(workspace / "clean.pt")]
    code, _, err = run(capsys, *argv, "--test", "labels")
    assert code == 2 and "10-class model" in err
    # the default decision includes the label-free test, which reads any answers (a new head): the
    # suspect is tested, and an unmarked one is not verified
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 1 and json.loads(out)["verified"] is False


@pytest.mark.timeout(660)  # the demo in a subprocess: about a minute alone, minutes on a shared machine
def test_demo_fast_end_to_end_in_a_subprocess(tmp_path: Path, fashion: ImageDataset) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "backmark", "demo", "--fast", "--out", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "report.md" in proc.stdout and "Traceback" not in proc.stderr
    report = json.loads((out / "report.json").read_text())
    by_name = {m["name"]: m for m in report["models"]}
    assert set(by_name) == {"clean", "from-scratch", "pretrained", "clean-2"}
    assert by_name["from-scratch"]["verified"] and by_name["pretrained"]["verified"]
    assert not by_name["clean"]["verified"] and not by_name["clean-2"]["verified"]
    for name in ("report.md", "secret/triggers.png", "accuracy.png", "training.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "secret" / "triggers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report_md = (out / "report.md").read_text()
    assert "triggers.png)" not in report_md  # the secret triggers are not shown in the shareable report
    assert "secret/triggers.png" in report_md and "clean-2" in report_md and " s |" in report_md
    # the third party's public check of the released model: opened items, matches, the exact p-value
    check = report["public_check"]
    assert check["verified"] and check["triggers_verifiable"] and check["items_opened"] == 25
    assert check["threshold"] <= check["matches"] <= 25 and check["p_value_corrected"] < 1e-6
    # the registry (SQLite, in the folder): the owner first, the thief later; the log audits clean
    registry = report["registry"]
    assert [(e["who"], e["entry"]) for e in registry["entries"]] == [("owner", 1), ("thief", 2)]
    assert registry["lookup_owner_key"] == [1] and registry["audit_ok"]
    assert registry["entries"][0]["identity"] == report["identities"]["owner"]
    assert (out / "registry" / "registry.db").stat().st_size > 0
    host, port = registry["url"].removeprefix("http://").split(":")
    with pytest.raises(OSError):  # the server was stopped at the end of the demo
        socket.create_connection((host, int(port)), timeout=2).close()
    # both keys on both models: the thief's mark is in its model only, the owner's in both
    verified = {(c["key"], c["model"]): c["verified"] for c in report["evidence"]}
    assert verified == {
        ("owner", "from-scratch"): True,
        ("owner", "thief"): True,
        ("thief", "from-scratch"): False,
        ("thief", "thief"): True,
    }
    # the dispute: both claims valid on the thief's model, the earlier registration (the owner's) wins
    dispute = report["dispute"]
    assert dispute["first"] == "owner" and dispute["first_identity"] == report["identities"]["owner"]
    assert [(o["claim"], o["valid"]) for o in dispute["outcomes"]] == [("owner", True), ("thief", True)]
    for section in ("## 2. Registration", "## 3. A public check", "## 4. A thief", "**Verdict: owner**"):
        assert section in report_md
    assert (out / "evidence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_entry_point_error_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "backmark", "verify", "--key", str(tmp_path), "--model", "m.pt"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("backmark: error:")


def test_every_json_form_prints_only_json_on_stdout(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -q: progress goes to stderr, so stdout parses as one JSON document for every verb."""
    key, marked = str(workspace / "key"), str(workspace / "marked.pt")
    tiny = ["--train-subset", "600", "--test-subset", "200", "--epochs", "1"]
    forms = {
        "keygen": ["--out", str(tmp_path / "k"), "--classes", "10", "--shape", "1x28x28", "--size", "10"],
        "train": ["--data", "fashion-mnist", "--out", str(tmp_path / "t.pt"), *tiny],
        "embed": [
            "--key", key, "--data", "fashion-mnist", "--arch", "cnn", "--out", str(tmp_path / "e.pt"),
            "--allow-unverified", *tiny,
        ],
        "verify": ["--key", key, "--model", marked],
        "export": ["--model", marked, "--torchscript", str(tmp_path / "m.ts")],
        "attack": [
            "--attacks", "quantize:bits=4", "--model", marked, "--key", key, "--data", "fashion-mnist",
            "--out", str(tmp_path / "att"), "--train-subset", "600", "--test-subset", "200",
        ],
    }  # fmt: skip
    for verb, argv in forms.items():
        code, out, err = run(capsys, verb, *argv, "--json")
        assert code in (0, 1), f"{verb}: {err}"
        assert isinstance(json.loads(out), dict | list), verb
        if verb in ("train", "embed"):
            assert "epoch 1" in err  # the progress lines are still there, on stderr


def test_embed_that_would_not_verify_says_so_and_exits_1(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "embed", "--key", str(workspace / "key"), "--data", "fashion-mnist", "--arch", "cnn",
        "--epochs", "1", "--train-subset", "300", "--test-subset", "100", "--triggers-per-batch", "1",
        "--reference", "--seed", "0", "--out", str(tmp_path / "weak.pt"), "--json", "-q",
    ]  # fmt: skip
    code, out, err = run(capsys, *argv)
    summary = json.loads(out)
    assert summary["verified"] is False and summary["matches"] < summary["threshold"]
    assert code == 1 and "would NOT verify" in err and "--epochs" in err
    assert (tmp_path / "weak.pt").exists()  # the model is kept
    code, _, _ = run(capsys, *argv[:-4], "--out", str(tmp_path / "weak2.pt"), "-q", "--allow-unverified")
    assert code == 0


def test_keygen_heldout_draws_real_images_of_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fashion: ImageDataset
) -> None:
    base = ["keygen", "--classes", "10", "--shape", "1x28x28", "--size", "20", "--seed", "1", "-q"]
    code, _, err = run(
        capsys, *base, "--out", str(tmp_path / "k"), "--kind", "heldout", "--data", "fashion-mnist"
    )
    assert code == 0, err
    from backmark.keys import load_key_pair

    mk, vk = load_key_pair(tmp_path / "k")
    assert vk.kind == "heldout" and vk.null_classes == 9 and mk.true_classes is not None
    train = fashion.train_x.numpy()
    assert all(np.array_equal(train[i], img) for i, img in zip(mk.source["indices"], mk.images, strict=True))
    public = json.loads((tmp_path / "k" / "verification-key.json").read_text())
    assert set(public) == set(vk.body()) | {"digest"} and "source" not in public  # it names no image
    code, out, _ = run(capsys, "keycheck", "--key", str(tmp_path / "k"))
    assert code == 0 and "heldout trigger labels are the ones its master seed draws" in out
    for extra, message in (
        (["--kind", "heldout"], "keygen --data"),
        (["--data", "fashion-mnist"], "--data applies with --kind heldout"),
        (["--kind", "heldout", "--data", "fashion-mnist", "--classes", "5"], "not 5 of 1x28x28"),
    ):
        code, _, err = run(capsys, *base, "--out", str(tmp_path / "bad"), *extra)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
