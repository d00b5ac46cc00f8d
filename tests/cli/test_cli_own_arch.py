"""The command line with the user's own architecture (``--arch MODULE:CALLABLE``) and safetensors files."""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_helpers import run

from backmark.cli.main import main
from backmark.data import ImageDataset
from backmark.models import load_checkpoint

USER_CODE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, input_shape, width):
        super().__init__()
        c, h, w = input_shape
        self.body = nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(width * (h // 2) * (w // 2), num_classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def make_net(*, num_classes, input_shape, width=8):
    return Net(num_classes, input_shape, width)
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, fashion: ImageDataset) -> Iterator[Path]:
    """A key and a model of the user's own architecture, marked through the CLI (from the user's folder)."""
    root = tmp_path_factory.mktemp("own")
    (root / "userarch_bm23.py").write_text(USER_CODE)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        keygen = "keygen --out key --classes 10 --shape 1x28x28 --size 20 --seed 4 -q"
        assert main(keygen.split()) == 0
        embed = "embed --key key --data fashion-mnist --arch userarch_bm23:make_net --epochs 2"
        embed += " --train-subset 1000 --test-subset 300 --triggers-per-batch 10 --seed 0 --out m.pt -q"
        code = main([*embed.split(), "--arch-args", '{"width": 6}'])
        assert code == 0
        yield root
    sys.modules.pop("userarch_bm23", None)


def test_checkpoint_records_the_architecture_and_loads_only_when_trusted(
    made: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(made)
    model, info = load_checkpoint(made / "m.pt", allow_code=True)
    assert info.arch == "userarch_bm23:make_net" and info.arch_args == {"width": 6}  # no mean/std: not taken
    assert type(model).__name__ == "Net" and model.body[0].out_channels == 6
    code, _, err = run(capsys, "verify", "--key", "key", "--model", "m.pt")
    assert code == 2 and err.count("\n") == 1
    assert "userarch_bm23:make_net, your own code" in err and "--trust-code" in err
    code, out, _ = run(capsys, "verify", "--key", "key", "--model", "m.pt", "--trust-code", "--json")
    assert code == 0 and json.loads(out)["evidence"]["labels"]["matches"] == 20


def test_safetensors_export_verify_and_from(
    made: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(made)
    code, out, _ = run(capsys, "export", "--model", "m.pt", "--safetensors", "m.safetensors", "--trust-code",
                       "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["format"] == "safetensors"
    raw = (made / "m.safetensors").read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + size])["__metadata__"]
    assert meta["format"] == "backmark-safetensors" and meta["arch"] == "userarch_bm23:make_net"
    assert json.loads(meta["input_shape"]) == [1, 28, 28] and meta["num_classes"] == "10"
    code, out, _ = run(capsys, "verify", "--key", "key", "--model", "m.safetensors", "--trust-code", "--json")
    assert code == 0 and json.loads(out)["evidence"]["labels"]["matches"] == 20
    a, _ = load_checkpoint(made / "m.pt", allow_code=True)
    b, _ = load_checkpoint(made / "m.safetensors", allow_code=True)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    code, _, err = run(capsys, "embed", "--key", "key", "--data", "fashion-mnist", "--from", "m.safetensors",
                       "--out", "again.pt")  # fmt: skip
    assert code == 2 and "--trust-code" in err and not (made / "again.pt").exists()


def test_damaged_safetensors_and_bad_arch_are_one_line_errors(
    made: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(made)
    raw = bytearray((made / "m.safetensors").read_bytes())
    raw[-3] ^= 0xFF  # a weight's byte
    (made / "flipped.safetensors").write_bytes(bytes(raw))
    (made / "cut.safetensors").write_bytes(bytes(raw[: len(raw) // 2]))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(made / "bare.safetensors"))
    expected = {
        "flipped.safetensors": "is corrupt: its tensors do not match the SHA-256",
        "cut.safetensors": "not a readable safetensors file",
        "bare.safetensors": "without backmark's metadata",
    }
    for name, words in expected.items():
        code, _, err = run(capsys, "verify", "--key", "key", "--model", name, "--trust-code")
        assert code == 2 and words in err and err.count("\n") == 1, (name, err)
    bad = {
        "nosuchmodule_bm23:make": "cannot import 'nosuchmodule_bm23'",
        "userarch_bm23:nothing": "has no 'nothing'",
        "not a name": "choose from: cnn, preact-resnet18, or MODULE:CALLABLE",
        "my-models:net": "must be a registered name (`backmark models`) or MODULE:CALLABLE",
    }
    for arch, words in bad.items():
        code, _, err = run(capsys, "train", "--data", "fashion-mnist", "--arch", arch, "--out", "x.pt",
                           "--train-subset", "100")  # fmt: skip
        assert code == 2 and words in err and err.count("\n") == 1, (arch, err)
    code, _, err = run(capsys, "train", "--data", "fashion-mnist", "--arch", "userarch_bm23:make_net",
                       "--arch-args", "[1]", "--out", "x.pt")  # fmt: skip
    assert code == 2 and "--arch-args must be a JSON object" in err


SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.timeout(180)
def test_serve_loads_the_users_architecture_only_with_trust_code(
    made: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --trust-code` serves a MODULE:CALLABLE checkpoint; another verb verifies through it."""
    monkeypatch.chdir(made)
    code, _, err = run(capsys, "serve", "m.pt", "--port", "0")
    assert code == 2 and err.count("\n") == 1 and "--trust-code" in err  # refused before listening
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "backmark", "serve", "m.pt", "--trust-code", "--port", "0", "--name", "own",
         "-q"],
        cwd=made,  # the user's module is found in the current folder, as for the other verbs
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 90)  # a deadline on the server's first line
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("serving own at http://127.0.0.1:"), line
        url = line.split()[3]
        code, _, err = run(capsys, "verify", "--key", "key", "--target", url, "--protocol", "v2",
                           "--deadline", "60", "-q")  # fmt: skip
        assert code == 0, err  # exit 0: verified through the server
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_bare_safetensors_verify_embed_and_trace_with_arch(
    made: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights as a hub shares them (safetensors.torch.save_file, no backmark metadata): --arch builds
    them, with the key's input shape and class count; what does not fit is a one-line error."""
    from safetensors.torch import save_file

    monkeypatch.chdir(made)
    model, _ = load_checkpoint(made / "m.pt", allow_code=True)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, "hub.safetensors", metadata={"format": "pt"})  # what transformers writes
    save_file({f"module.{k}": v for k, v in weights.items()}, "ddp.safetensors")
    own = ["--arch", "userarch_bm23:make_net", "--arch-args", '{"width": 6}']
    code, _, err = run(
        capsys, "verify", "--key", "key", "--model", "hub.safetensors", *own, "--trust-code", "-q"
    )
    assert code == 0, err  # verified: the bare weights are the marked model's
    code, _, err = run(
        capsys, "trace", "--keys", "key", "--model", "hub.safetensors", *own, "--trust-code", "-q"
    )
    assert code == 0, err  # every verb that opens a --model takes the same options
    refused = {
        ("verify", "--model", "hub.safetensors"): "num_classes): give its architecture (--arch NAME",
        ("verify", "--model", "hub.safetensors", *own): "your own code",  # no --trust-code
        ("verify", "--model", "hub.safetensors", "--arch", "userarch_bm23:make_net", "--trust-code"):
            "body.0.weight is [6, 1, 3, 3], not [8, 1, 3, 3]",  # the factory's default width is 8
        ("verify", "--model", "hub.safetensors", "--arch", "cnn"): "tensors missing from the file",
        ("verify", "--model", "ddp.safetensors", *own, "--trust-code"): "prefix module.: strip it",
        ("verify", "--model", "m.pt", "--arch", "cnn"): "records its own architecture; --arch is for a",
        ("verify", "--target", "onnx:x.onnx", "--arch", "cnn"): "--arch describes a --model file",
        ("verify", "--model", "hub.safetensors", "--arch-args", "{}"): "together with --arch",
        ("verify", "--model", "hub.safetensors", "--arch", "nosuch"): "unknown architecture 'nosuch'",
    }  # fmt: skip
    for argv, words in refused.items():
        code, _, err = run(capsys, *argv[:1], "--key", "key", *argv[1:])
        assert code == 2 and words in err and err.count("\n") == 1, (argv, err)
    code, _, err = run(capsys, "embed", "--key", "key", "--data", "fashion-mnist", "--from",
                       "hub.safetensors", *own, "--trust-code", "--epochs", "1", "--train-subset", "300",
                       "--test-subset", "100", "--seed", "0", "--out", "remarked.pt", "-q")  # fmt: skip
    assert code == 0, err
    _, info = load_checkpoint(made / "remarked.pt", allow_code=True)
    assert info.arch == "userarch_bm23:make_net" and info.arch_args == {"width": 6}
    code, _, err = run(capsys, "embed", "--key", "key", "--data", "fashion-mnist", "--out", "x.pt")
    assert code == 2 and "embed needs --arch ARCH (FromScratch) or --from CKPT (PreTrained)" in err
