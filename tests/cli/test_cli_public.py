"""challenge, prove, check and trace from the command line: exit codes, JSON fields, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run

from backmark.cli.main import main

SUBSET = ["--train-subset", "3000", "--test-subset", "500"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two licensee keys, a clean model and a copy marked (PreTrained) with the first key.

    8 epochs learn all 60 triggers (4 learned 51: a check opening 15 random items then failed now and
    then, when the challenge happened to open several unlearned ones)."""
    root = tmp_path_factory.mktemp("public-cli")
    for name, seed in (("acme", "1"), ("globex", "2")):
        args = ["keygen", "--out", str(root / name), "--classes", "10", "--shape", "1x28x28"]
        assert main([*args, "--size", "60", "--seed", seed, "-q"]) == 0
    train = ["train", "--data", "fashion-mnist", "--epochs", "1", "--seed", "0", *SUBSET, "-q"]
    assert main([*train, "--out", str(root / "clean.pt")]) == 0
    embed = [
        "embed",
        "--key",
        str(root / "acme"),
        "--data",
        "fashion-mnist",
        "--from",
        str(root / "clean.pt"),
    ]
    assert main([*embed, *SUBSET, "--seed", "0", "--epochs", "8", "--out", str(root / "acme.pt"), "-q"]) == 0
    return root


def test_a_public_check_end_to_end(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, vk = workspace / "acme", workspace / "acme" / "verification-key.json"
    challenge, proof = tmp_path / "challenge.json", tmp_path / "proof.json"
    code, out, _ = run(capsys, "challenge", "--out", str(challenge), "--size", "15")
    assert code == 0 and "15 items" in out
    code, out, _ = run(capsys, "prove", "--key", str(key), "--challenge", str(challenge), "--out", str(proof))
    assert code == 0 and "opens 15 items" in out and "verifications of 15 items left" in out
    args = ["check", "--vk", str(vk), "--challenge", str(challenge), "--proof", str(proof)]
    code, out, _ = run(capsys, *args, "--model", str(workspace / "acme.pt"), "--json")
    result = json.loads(out)
    assert code == 0 and result["verified"] and result["triggers_verifiable"]
    for field in ("n", "num_classes", "p_value_corrected", "alpha", "level", "indices", "reason", "test"):
        assert field in result
    for name in ("labels", "label-free"):  # each test's figures under its own name, both decisive
        assert {"p_value", "threshold", "verified", "assumption"} <= set(result["evidence"][name])
    labels = result["evidence"]["labels"]
    assert labels["matches"] >= labels["threshold"] and result["evidence"]["label-free"]["decisive"]
    assert result["n"] == 15 and len(result["indices"]) == 15 and result["slot_choices"] == 4
    code, out, _ = run(capsys, *args, "--model", str(workspace / "clean.pt"))
    assert code == 1 and out.startswith("NOT VERIFIED")
    # any target, the opened items hidden among decoys
    target = ["--target", f"ckpt:{workspace / 'acme.pt'}", "--decoys", "100", "--decoy-data", "fashion-mnist"]
    code, out, _ = run(capsys, *args, *target, "--json")
    result = json.loads(out)
    assert code == 0 and result["verified"] and result["queries"]["decoys"] == 100
    # a proof answers once: the same proof given as an earlier one is not held against itself, but the
    # items of another proof are
    again = tmp_path / "again.json"
    other = tmp_path / "other.json"
    run(capsys, "challenge", "--out", str(other), "--size", "15")
    run(capsys, "prove", "--key", str(key), "--challenge", str(other), "--out", str(again))
    code, _, _ = run(
        capsys, *args, "--model", str(workspace / "acme.pt"), "--previous", str(proof), str(again)
    )
    assert code == 0


def test_rejections_exit_2_with_one_line(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, vk = workspace / "globex", workspace / "globex" / "verification-key.json"
    challenge, proof = tmp_path / "challenge.json", tmp_path / "proof.json"
    run(capsys, "challenge", "--out", str(challenge))
    code, _, err = run(capsys, "prove", "--key", str(key), "--challenge", str(challenge), "--out", str(proof))
    assert code == 2 and "--size" in err and err.count("\n") == 1
    assert (
        run(
            capsys,
            "prove",
            "--key",
            str(key),
            "--challenge",
            str(challenge),
            "--size",
            "10",
            "--out",
            str(proof),
        )[0]
        == 0
    )
    text = proof.read_text()
    position = text.index('"label": ') + len('"label": ')
    digit = text[position]
    proof.write_text(text[:position] + ("1" if digit != "1" else "2") + text[position + 1 :])
    args = ["check", "--vk", str(vk), "--challenge", str(challenge), "--proof", str(proof)]
    code, out, err = run(capsys, *args, "--model", str(workspace / "acme.pt"))
    assert code == 2 and out == "" and "was changed" in err and err.count("\n") == 1
    wrong_vk = workspace / "acme" / "verification-key.json"
    proof.write_text(text)
    code, _, err = run(
        capsys,
        "check",
        "--vk",
        str(wrong_vk),
        "--challenge",
        str(challenge),
        "--proof",
        str(proof),
        "--model",
        str(workspace / "acme.pt"),
    )
    assert code == 2 and "not for this verification key" in err
    code, _, err = run(capsys, *args, "--model", str(workspace / "acme.pt"), "--keys-held", "0")
    assert code == 2 and "--keys-held must be at least 1" in err
    assert run(capsys, "challenge", "--out", str(challenge))[0] == 2  # exists: no overwrite without --force


def test_trace_names_the_licensee(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = [str(workspace / "acme"), str(workspace / "globex")]
    code, out, _ = run(capsys, "trace", "--keys", *keys, "--model", str(workspace / "acme.pt"))
    assert code == 0 and out.startswith("LICENSEE: acme")
    code, out, _ = run(capsys, "trace", "--keys", *keys, "--model", str(workspace / "clean.pt"), "--json")
    result = json.loads(out)
    assert code == 1 and result["named"] is None and result["keys"] == 2
    code, _, err = run(
        capsys, "trace", "--keys", *keys, "--names", "a", "--model", str(workspace / "clean.pt")
    )
    assert code == 2 and "2 keys" in err
