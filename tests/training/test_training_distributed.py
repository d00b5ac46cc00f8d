"""Data-parallel training with torchrun: two CPU processes over gloo, as CI runs it.

Both launch ``python -m torch.distributed.run --standalone --nproc-per-node 2`` (what ``torchrun`` is)
with one thread per process, on a small Fashion-MNIST subset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import backmark
from backmark.cli.main import main
from backmark.data import ImageDataset
from backmark.keys import load_key_pair
from backmark.models import load_checkpoint
from backmark.verify import verify

SRC = str(Path(backmark.__file__).resolve().parents[1])

# Each rank trains through the library and saves what it ended with; rank 0 also writes the checkpoint.
_SCRIPT = r"""
import json, sys, torch
import torch.distributed as dist
torch.set_num_threads(1)
from backmark.data import load_dataset
from backmark.embed import TrainConfig, embed_from_scratch
from backmark.keys import generate_key, save_key_pair
from backmark.models import save_checkpoint
out = sys.argv[1]
dist.init_process_group("gloo")
data = load_dataset("fashion-mnist", download=False).subset(train=1000, test=200, seed=0)
key = generate_key(num_classes=10, input_shape=data.input_shape, size=20, seed=b"\x05" * 32)
trained = embed_from_scratch(data, key, config=TrainConfig(epochs=1), progress=False, device="cpu")
rank = dist.get_rank()
state = {k: v.contiguous() for k, v in trained.model.state_dict().items()}
torch.save(state, f"{out}/rank{rank}.pt")
if rank == 0:
    save_checkpoint(f"{out}/marked.pt", trained.model, trained.info)
    save_key_pair(key, f"{out}/key")
    with open(f"{out}/result.json", "w") as f:
        json.dump({"trigger_acc": trained.result.trigger_acc, "meta": dict(trained.info.meta)}, f)
dist.destroy_process_group()
"""


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("the two-process run did not finish in 240 s")


@pytest.mark.timeout(300)
def test_two_processes_learn_the_triggers_agree_and_write_a_checkpoint_that_verifies(
    tmp_path: Path, fashion: ImageDataset
) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(_SCRIPT)
    proc = _torchrun([str(script), str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["trigger_acc"] == 1.0  # the trigger set is learned
    assert result["meta"]["processes"] == 2 and result["meta"]["device"] == "cpu"
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # the same weights, bit for bit
    model, _ = load_checkpoint(tmp_path / "marked.pt")
    mk, vk = load_key_pair(tmp_path / "key")
    check = verify(model, mk, vk)
    assert check.verified and check.evidence.matches == mk.n


@pytest.mark.timeout(300)
def test_torchrun_embed_prints_and_writes_once_and_the_mark_verifies(
    tmp_path: Path, fashion: ImageDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key"
    assert (
        main(["keygen", "--out", str(key), "--classes", "10", "--shape", "1x28x28", "--seed", "3", "-q"]) == 0
    )
    out = tmp_path / "marked.pt"
    proc = _torchrun(
        ["-m", "backmark", "embed", "--key", str(key), "--data", "fashion-mnist", "--arch", "cnn",
         "--epochs", "1", "--train-subset", "1000", "--test-subset", "200", "--seed", "0", "--out", str(out),
         "--json", "-q", "--device", "cpu"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # one JSON object: rank 0 alone prints
    assert summary["verified"] and summary["trigger_acc"] == 1.0
    _, info = load_checkpoint(out)
    assert info.meta["processes"] == 2
    capsys.readouterr()
    assert main(["verify", "--key", str(key), "--model", str(out), "-q"]) == 0
