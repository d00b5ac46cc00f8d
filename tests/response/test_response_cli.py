"""The command line: response-key new, serve --response-key (a real subprocess), verify --response-key."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from cli_helpers import run
from response_helpers import SHAPE, cnn, images
from test_response_serve import Marked
from torch import nn

from backmark.cli.main import main
from backmark.response import load_response_key
from backmark.serve import create_app, serving
from backmark.targets import DecoyTarget, ModuleTarget


def test_response_key_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.bmrk"
    code, out, _ = run(capsys, "response-key", "new", "--out", str(path), "--rate", "0.05", "--json")
    assert code == 0 and json.loads(out)["rate"] == 0.05
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = load_response_key(path)
    code, _, err = run(capsys, "response-key", "new", "--out", str(path))
    assert code == 2 and "already exists" in err and load_response_key(path) == first
    assert run(capsys, "response-key", "new", "--out", str(path), "--force", "-q")[0] == 0
    assert load_response_key(path) != first
    code, _, err = run(capsys, "response-key", "new", "--out", str(tmp_path / "x"), "--rate", "0.9")
    assert code == 2 and "rate" in err


@pytest.fixture(scope="module")
def served_log(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(response key, query log) after 1500 images went through `backmark serve` in a subprocess."""
    folder = tmp_path_factory.mktemp("served")
    rkey, db = folder / "r.bmrk", folder / "q.db"
    assert main(["response-key", "new", "--out", str(rkey), "--rate", "0.05", "-q"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "backmark", "serve", str(checkpoint), "--port", "0", "--name", "m", "-q"]
    argv += ["--response-key", str(rkey), "--query-log", str(db)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving m at http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        url = line.split()[3]
        x = (images(1500, seed=11) * 255).round().to(torch.uint8)
        with httpx.Client(timeout=60) as client:
            for start in range(0, 1500, 500):
                chunk = x[start : start + 500]
                body = {"inputs": [{"name": "images", "datatype": "UINT8", "shape": list(chunk.shape),
                                    "data": chunk.flatten().tolist()}]}  # fmt: skip
                assert client.post(f"{url}/infer", json=body).status_code == 200
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    return rkey, db


def test_verify_exit_codes(
    served_log: tuple[Path, Path], checkpoint: Path, model: nn.Module, capsys: pytest.CaptureFixture[str]
) -> None:
    rkey, db = served_log
    base = ["verify", "--response-key", str(rkey), "--query-log", str(db)]
    code, out, _ = run(capsys, *base, "--model", str(checkpoint), "--json")
    result = json.loads(out)
    assert code == 1 and result["verified"] is False and result["matches"] == 0
    assert 40 < result["n"] < 120 and result["null_rate"] == pytest.approx(1 / 9)
    assert set(result) >= {"matches", "n", "p_value", "threshold", "verified", "null_rate"}
    # a copy that learned the marked answers, behind a v2 server (and among decoys)
    app = create_app(Marked(model, load_response_key(rkey)), name="copy", input_shape=SHAPE, num_classes=10)
    with serving(app) as url:
        target = f"{url}/v2/models/copy"
        code, out, _ = run(capsys, *base, "--target", target, "--protocol", "v2")
        assert code == 0 and out.startswith(f"VERIFIED: {target}")
        code, out, _ = run(
            capsys, *base, "--target", target, "--protocol", "v2", "--decoys", "50",
            "--decoy-data", "fashion-mnist", "--json",
        )  # fmt: skip
        result = json.loads(out)
        assert code == 0 and result["matches"] == result["n"] and result["queries"]["decoys"] == 50


def test_verify_errors(served_log: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rkey, db = served_log
    base = ["verify", "--response-key", str(rkey), "--query-log", str(db), "--model", "m.pt"]
    code, _, err = run(capsys, *base, "--vk", "x.json")
    assert code == 2 and "--vk applies with --key" in err
    code, _, err = run(capsys, *base, "--protocol", "v2")
    assert code == 2 and "apply to --target" in err


def test_verify_needs_one_key_and_a_log(
    served_log: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rkey, db = served_log
    code, _, err = run(capsys, "verify", "--response-key", str(rkey), "--model", "m.pt")
    assert code == 2 and "--query-log" in err
    code, _, err = run(capsys, "verify", "--key", "k", "--query-log", str(db), "--model", "m.pt")
    assert code == 2 and "--query-log applies with --response-key" in err
    code, _, err = run(capsys, "verify", "--key", "k", "--response-key", str(rkey), "--model", "m.pt")
    assert code == 2 and "--query-log" in err
    code, _, err = run(capsys, "verify", "--model", "m.pt")
    assert code == 2 and "--key KEYDIR, --response-key RKEY, or both" in err
    other = tmp_path / "o.bmrk"
    assert main(["response-key", "new", "--out", str(other), "-q"]) == 0
    code, _, err = run(
        capsys, "verify", "--response-key", str(other), "--query-log", str(db), "--model", "m.pt"
    )
    assert code == 2 and "was kept for response key" in err


def test_decoys_do_not_change_the_count(served_log: tuple[Path, Path], model: nn.Module) -> None:
    from backmark.response import ResponseLog, verify_response

    rkey, db = served_log
    key = load_response_key(rkey)
    logged = ResponseLog(db, create=False).read()
    decoys = (images(64, seed=3) * 255).to(torch.uint8)
    wrapped = DecoyTarget(
        Marked(model, key), decoys, count=64, labels=torch.zeros(64, dtype=torch.int64), seed=1
    )
    e = verify_response(wrapped, key, logged, num_classes=10, input_shape=SHAPE)
    assert e.verified and e.matches == e.n
    plain = verify_response(ModuleTarget(cnn(4)), key, logged, num_classes=10, input_shape=SHAPE)
    assert not plain.verified


class Triggered(nn.Module):
    """``inner``'s answers, except that the key's trigger images get their key labels (a marked model)."""

    def __init__(self, inner: nn.Module, triggers: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.inner, self.triggers, self.labels = inner, triggers.flatten(1), labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        hit = (torch.cdist(x.flatten(1), self.triggers) < 1e-3).float()  # (B, n): which trigger, if any
        found = hit.sum(1) > 0
        onehot = torch.nn.functional.one_hot(self.labels, 10).float()
        return torch.where(found[:, None], 100 * (hit @ onehot), out)


def test_verify_combined_claim(
    served_log: tuple[Path, Path], model: nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--key and --response-key together: one claim, each of 3 tests at alpha/3, verified if any holds."""
    from backmark.keys import generate_key, save_key_pair
    from backmark.models import ModelInfo, save_checkpoint

    rkey, db = served_log
    mk = generate_key(num_classes=10, input_shape=SHAPE, size=40, seed=b"\x03" * 32)
    save_key_pair(mk, tmp_path / "key")
    x, y = mk.trigger_tensors()
    key = load_response_key(rkey)
    cases: dict[str, tuple[Any, bool, bool]] = {  # name: (suspect, trigger verified, response verified)
        "clean": (cnn(5), False, False),
        "extracted": (Marked(model, key), False, True),
        "marked": (Triggered(cnn(6), x, y), True, False),
    }
    base = ["verify", "--key", str(tmp_path / "key"), "--response-key", str(rkey), "--query-log", str(db)]
    for name, (suspect, trig, resp) in cases.items():
        if name != "clean":  # not a plain architecture: served instead of saved as a checkpoint
            app = create_app(suspect, name=name, input_shape=SHAPE, num_classes=10)
            with serving(app) as url:
                target = f"{url}/v2/models/{name}"
                code, out, _ = run(capsys, *base, "--target", target, "--protocol", "v2", "--json")
        else:
            assert isinstance(suspect, nn.Module)
            ckpt = save_checkpoint(tmp_path / "clean.pt", suspect, ModelInfo("cnn", {}, SHAPE, 10))
            code, out, _ = run(capsys, *base, "--model", str(ckpt), "--json")
        claim = json.loads(out)
        assert claim["marks_verified"] == [m for m, ok in (("trigger", trig), ("response", resp)) if ok], name
        assert code == (0 if trig or resp else 1) and claim["verified"] is (trig or resp)
        assert claim["pieces"] == ["labels", "label-free", "response"] and claim["level"] == 1e-6 / 3
        assert claim["trigger"]["threshold_at_level"] >= claim["trigger"]["threshold"]
        small = min(claim["evidence"][k]["p_value"] for k in claim["pieces"])
        assert claim["p_value"] == pytest.approx(min(1.0, 3 * small))
    code, out, _ = run(capsys, *base, "--model", str(tmp_path / "clean.pt"))
    assert code == 1 and out.startswith("NOT VERIFIED") and "alpha/3" in out and "combined:" in out
    wrong = generate_key(num_classes=10, input_shape=(3, 32, 32), size=20)
    save_key_pair(wrong, tmp_path / "wrong")
    code, _, err = run(capsys, *base[:1], "--key", str(tmp_path / "wrong"), *base[3:], "--model", "m.pt")
    assert code == 2 and "do not mark the same model" in err
