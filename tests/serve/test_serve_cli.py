"""The command line: export, verify --target (files and servers), serve, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run

from backmark.cli.main import main


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


def test_export_then_verify_the_exports_like_the_checkpoint(
    checkpoints: tuple[Path, Path], key_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marked, clean = checkpoints
    code, local = _json(capsys, "verify", "--key", str(key_dir), "--model", str(marked))
    assert code == 0 and local["model"] == str(marked)
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / f"m.{fmt}"
        code, summary = _json(capsys, "export", "--model", str(marked), f"--{fmt}", str(out))
        assert code == 0 and summary["probe_agreement"] == 1.0 and out.is_file()
        code, result = _json(capsys, "verify", "--key", str(key_dir), "--target", f"{fmt}:{out}")
        assert code == 0 and result["target"] == f"{fmt}:{out}"
        assert result["evidence"] == local["evidence"] and result["p_value"] == local["p_value"]
    code, _, err = run(capsys, "export", "--model", str(marked), "--onnx", str(tmp_path / "m.onnx"))
    assert code == 2 and "already exists" in err
    run(capsys, "export", "--model", str(clean), "--onnx", str(tmp_path / "c.onnx"), "-q")
    assert (
        run(capsys, "verify", "--key", str(key_dir), "--target", f"onnx:{tmp_path / 'c.onnx'}", "-q")[0] == 1
    )


def test_verify_against_servers_with_decoys(
    marked_url: str, clean_url: str, key_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = f"{marked_url}/v2/models/marked"
    code, out, _ = run(capsys, "verify", "--key", str(key_dir), "--target", v2, "--protocol", "v2")
    assert code == 0 and out.startswith(f"VERIFIED: {v2}")
    code, result = _json(
        capsys, "verify", "--key", str(key_dir), "--target", v2, "--protocol", "v2", "--decoys", "90",
        "--decoy-data", "fashion-mnist", "--batch-size", "16",
    )  # fmt: skip
    assert code == 0 and result["queries"]["queries"] == 120 and result["queries"]["decoys"] == 90  # type: ignore[index]
    code, out, _ = run(
        capsys, "verify", "--key", str(key_dir), "--target", v2, "--protocol", "v2", "--decoys", "20"
    )
    assert code == 0 and "30 triggers hidden among 20 decoys" in out
    json_url = f"{clean_url}/predict/clean"
    code, out, _ = run(capsys, "verify", "--key", str(key_dir), "--target", json_url, "--protocol", "json")
    assert code == 1 and out.startswith("NOT VERIFIED")


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--target", "model.onnx"], "did you mean onnx:model.onnx"),
        (["--target", "http://127.0.0.1:9/v2/models/m"], "--protocol v2 or json"),
        (["--target", "onnx:x.onnx", "--protocol", "v2"], "applies to http"),
        (["--model", "m.pt", "--protocol", "v2"], "apply to --target"),
        (["--target", "http://127.0.0.1:9/v2/models/m", "--protocol", "v2", "--timeout", "0"], "--timeout"),
        (
            ["--target", "http://127.0.0.1:9/v2/models/m", "--protocol", "v2", "--auth-env", "BM_NOPE"],
            "BM_NOPE",
        ),
        (["--target", "http://127.0.0.1:9/v2/models/m", "--protocol", "v2"], "cannot connect"),
        (["--target", "onnx:missing.onnx"], "not found"),
        (["--target", "onnx:x.onnx", "--decoys", "5", "--decoy-data", "nosuch"], "unknown dataset"),
    ],
)
def test_bad_targets_are_one_line_exit_2(
    extra: list[str], needle: str, key_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BM_NOPE", raising=False)
    code, _, err = run(capsys, "verify", "--key", str(key_dir), *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_model_and_target_are_exclusive(key_dir: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["verify", "--key", str(key_dir), "--model", "m.pt", "--target", "onnx:m.onnx"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["verify", "--key", str(key_dir)])


def test_serve_command_in_a_subprocess(checkpoints: tuple[Path, Path], key_dir: Path, tmp_path: Path) -> None:
    """`backmark serve CKPT --port 0` prints its URL; another process verifies through it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "backmark", "serve", str(checkpoints[0]), "--port", "0", "--name", "m", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving m at http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        url = line.split()[3]
        verify = subprocess.run(
            [
                sys.executable,
                "-m",
                "backmark",
                "verify",
                "--key",
                str(key_dir),
                "--target",
                url,
                "--protocol",
                "v2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert verify.returncode == 0, verify.stderr
        assert "VERIFIED" in verify.stdout
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: the conventional exit status
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_serve_refuses_bad_names_and_busy_ports(
    checkpoints: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "serve", str(checkpoints[0]), "--name", "../x")
    assert code == 2 and "--name" in err
    code, _, err = run(capsys, "serve", str(checkpoints[0]), "--host", "256.0.0.1", "--port", "0")
    assert code == 2 and "cannot listen on 256.0.0.1:0" in err and len(err.strip().splitlines()) == 1
