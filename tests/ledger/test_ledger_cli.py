"""The identity, register and registry verbs end to end, their one-line errors, and no torch on their path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Live, env

from backmark.cli.main import main
from backmark.keys import generate_key, load_verification_key, save_key_pair
from backmark.ledger.chain import check_receipt
from backmark.ledger.client import read_vk_digest


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registry-key") / "key"
    save_key_pair(generate_key(num_classes=10, input_shape=(1, 28, 28), size=5, seed=b"\x07" * 32), path)
    return path


def test_vk_digest_is_the_key_loaders_digest(key_dir: Path, tmp_path: Path) -> None:
    vk = load_verification_key(key_dir)
    assert read_vk_digest(key_dir) == read_vk_digest(key_dir / "verification-key.json") == vk.digest
    doc = json.loads((key_dir / "verification-key.json").read_text())
    doc["num_classes"] = 11
    (tmp_path / "vk.json").write_text(json.dumps(doc))
    assert (
        main(["registry", "lookup", "--registry", "http://127.0.0.1:9", "--vk", str(tmp_path / "vk.json")])
        == 2
    )


def test_identity_register_lookup_audit(
    live: Live,
    key_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["identity", "new", "--out", "owner"]) == 0
    assert stat.S_IMODE(os.stat("owner/identity.key").st_mode) == 0o600
    assert main(["identity", "new", "--out", "thief", "-q"]) == 0
    assert main(["identity", "new", "--out", "owner"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["identity", "show", "owner"]) == 0
    fingerprint = capsys.readouterr().out.strip()

    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    argv = [
        "register",
        "--registry",
        live.url,
        "--identity",
        "owner",
        "--vk",
        str(key_dir),
        "--model",
        str(model),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "as entry 1" in out
    [saved] = list(tmp_path.glob("receipt-*.json"))
    receipt = json.loads(saved.read_text())
    check_receipt(receipt, live.server.public)
    assert receipt["owner"] == fingerprint and receipt["vk_digest"] == load_verification_key(key_dir).digest

    assert main([*argv, "--out", "again.json"]) == 2  # the same key by the same identity
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "409 verification key" in err and "already registered" in err
    assert not Path("again.json").exists()
    assert main([*argv]) == 2 and "already exists; pass --force" in capsys.readouterr().err

    thief = [
        "register",
        "--registry",
        live.url,
        "--identity",
        "thief",
        "--vk",
        str(key_dir / "verification-key.json"),
    ]
    assert main([*thief, "--out", "thief.json", "-q"]) == 0
    assert capsys.readouterr().out == ""

    assert main(["registry", "lookup", "--registry", live.url, "--vk", str(key_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("entry      1") and fingerprint[:16] in lines[0]
    assert main(["registry", "lookup", "--registry", live.url, "--model", str(model), "--json"]) == 0
    assert [e["entry"] for e in json.loads(capsys.readouterr().out)] == [1]

    assert (
        main(
            ["registry", "audit", "--registry", live.url, "--receipt", str(saved), "--receipt", "thief.json"]
        )
        == 0
    )
    assert "OK, 2 entries" in capsys.readouterr().out


def test_bad_cli_input_is_one_line_without_traceback(
    live: Live, key_dir: Path, identity_dir: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    owner = str(identity_dir("owner"))
    cases = [
        (
            ["register", "--registry", "ftp://x", "--identity", owner, "--vk", str(key_dir)],
            "--registry 'ftp://x'",
        ),
        (
            ["register", "--registry", live.url, "--identity", "/nonexistent", "--vk", str(key_dir)],
            "backmark identity new",
        ),
        (["register", "--registry", live.url, "--identity", owner, "--vk", "/nonexistent.json"], "not found"),
        (["registry", "lookup", "--registry", live.url, "--model-digest", "xyz"], "400 model_digest"),
        (["registry", "audit", "--db", "mysql://a/b"], "--db 'mysql://a/b'"),
        (["registry", "serve", "--port", "99999"], "--port must be between 0 and 65535"),
        (["registry", "serve", "--rate", "0"], "--rate must be requests a second"),
        (["registry", "serve", "--header-timeout", "0"], "--header-timeout must be seconds"),
        (["registry", "serve", "--max-connections", "0"], "--max-connections must be 1 to"),
        (
            ["registry", "serve", "--db", live.db_url, "--identity", owner],
            "serve it with the identity that made it",
        ),
        (
            [
                "register",
                "--registry",
                "http://127.0.0.1:9",
                "--identity",
                owner,
                "--vk",
                str(key_dir),
                "--deadline",
                "0.5",
                "-q",
            ],
            "did not answer",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("backmark: error: ") and err.count("\n") == 1 and message in err, err
        assert "Traceback" not in err


def test_registry_verbs_do_not_import_torch() -> None:
    code = (
        "import sys; import backmark.ledger.client, backmark.ledger.server, backmark.cli.registry, "
        "backmark.ledger.audit, backmark.cli.parser; "
        "from backmark.cli.main import main; "
        "assert main(['identity', 'new', '--out', sys.argv[1], '-q']) == 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))"
    )
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", code, f"{tmp}/id"], capture_output=True, text=True, env=env(), timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
