"""The response mark measured (issue 11): does a copy extracted through the real HTTP server inherit it?

The owner trains a CNN on two thirds of Fashion-MNIST's training set and serves it with ``backmark serve
CKPT --response-key RKEY --query-log DB`` in a separate process. The attacker (this process) holds the
other third, sends each of its images once (the first Q of them, Q in --queries) as UINT8 v2 requests,
keeps the top-1 labels and trains a fresh CNN of the same architecture on them (model extraction,
--epochs, SGD one-cycle lr 0.05). The owner then verifies the copy against the query log with the exact
binomial test at null rate 1/(C-1); so are the served model itself and a clean model trained
independently on the attacker's third with its true labels. The served accuracy with the key is measured
by sending the test set through a server with the key (its own log); without the key it is the model's.

    PYTHONPATH=src .venv/bin/python benchmarks/response_mark.py                  # docs/response-mark.json
    PYTHONPATH=src .venv/bin/python benchmarks/response_mark.py --queries 2000 --epochs 2 --out /tmp/r
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import torch

from backmark.attacks._fit import fit
from backmark.attacks.base import AttackData
from backmark.attacks.extraction import channel_stats
from backmark.data import ImageDataset, load_dataset
from backmark.embed import TrainConfig, train_clean
from backmark.models import create_model, save_checkpoint
from backmark.response import ResponseLog, generate_response_key, save_response_key, verify_response
from backmark.targets import ModuleTarget

BATCH = 500  # images per request


@contextmanager
def server(ckpt: Path, rkey: Path, db: Path) -> Iterator[str]:
    """``backmark serve`` in a subprocess (one torch thread); yields the v2 model URL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "backmark", "serve", str(ckpt), "--port", "0", "--name", "m", "-q"]
    argv += ["--response-key", str(rkey), "--query-log", str(db)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("serving"):
            raise RuntimeError(
                f"the server did not start: {line} {proc.stderr.read() if proc.stderr else ''}"
            )
        yield line.split()[3]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def query(url: str, images: torch.Tensor) -> torch.Tensor:
    """Top-1 labels for uint8 (N, C, H, W) images, each sent once, ``BATCH`` per request."""
    out = []
    with httpx.Client(timeout=120) as client:
        for start in range(0, len(images), BATCH):
            chunk = images[start : start + BATCH]
            body = {
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "UINT8",
                        "shape": list(chunk.shape),
                        "data": chunk.flatten().tolist(),
                    }
                ],
                "outputs": [{"name": "label"}],
            }
            reply = client.post(f"{url}/infer", json=body)
            reply.raise_for_status()
            out.append(torch.tensor(reply.json()["outputs"][0]["data"], dtype=torch.int64))
    return torch.cat(out)


def accuracy(model: torch.nn.Module, data: ImageDataset) -> float:
    answers = ModuleTarget(model).predict(data.test_x.float() / 255.0)
    return float((answers == data.test_y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.02,0.05")
    parser.add_argument("--queries", default="5000,20000", help="attacker queries (at most a third of train)")
    parser.add_argument("--epochs", type=int, default=10, help="extraction epochs")
    parser.add_argument(
        "--owner-epochs", type=int, default=3, help="epochs of the served and the clean model"
    )
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    data = load_dataset("fashion-mnist", progress=False)
    perm = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))
    third = len(perm) // 3
    attacker_idx, owner_idx = perm[:third], perm[third:]

    def part(idx: torch.Tensor, name: str) -> ImageDataset:
        return replace(data, name=name, train_x=data.train_x[idx], train_y=data.train_y[idx])

    owner, attacker = part(owner_idx, "owner"), part(attacker_idx, "attacker")
    t = time.perf_counter()
    served = train_clean(owner, config=TrainConfig(epochs=args.owner_epochs, seed=0), progress=False)
    clean = train_clean(attacker, config=TrainConfig(epochs=args.owner_epochs, seed=1), progress=False)
    print(f"owner and clean models in {time.perf_counter() - t:.0f} s", flush=True)
    result: dict[str, Any] = {
        "config": {**vars(args), "attacker_images": third, "owner_images": len(owner_idx)},
        "served_test_acc_without_key": accuracy(served.model, data),
        "clean_test_acc": accuracy(clean.model, data),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "served.pt", served.model, served.info)
        for rate in args.rates.split(","):
            key = generate_response_key(rate=rate)
            rkey = save_response_key(key, Path(tmp) / f"r{rate}.bmrk")
            with server(ckpt, rkey, Path(tmp) / f"eval{rate}.db") as url:
                served_acc = float((query(url, data.test_x) == data.test_y).float().mean())
            print(f"rate {rate}: served accuracy with the key {served_acc:.2%}", flush=True)
            for q in (int(s) for s in args.queries.split(",")):
                db = Path(tmp) / f"q{rate}-{q}.db"
                images = attacker.train_x[:q]
                t = time.perf_counter()
                with server(ckpt, rkey, db) as url:
                    labels = query(url, images)
                query_s = time.perf_counter() - t
                mean, std = channel_stats(images)
                torch.manual_seed(2)
                copy = create_model("cnn", num_classes=10, input_shape=(1, 28, 28), mean=mean, std=std)
                t = time.perf_counter()
                fit(copy, AttackData(images, labels, 10), epochs=args.epochs, lr=0.05, schedule="onecycle")
                fit_s = time.perf_counter() - t
                log = ResponseLog(db, create=False)
                logged = log.read()
                log.close()
                row: dict[str, Any] = {
                    "rate": float(key.rate),
                    "queries": q,
                    "served_test_acc_with_key": served_acc,
                    "altered_logged": len(logged),
                    "copy_test_acc": accuracy(copy, data),
                    "query_seconds": round(query_s, 1),
                    "extraction_seconds": round(fit_s, 1),
                }
                for name, model in (("copy", copy), ("clean", clean.model), ("served", served.model)):
                    e = verify_response(
                        ModuleTarget(model), key, logged, num_classes=10, input_shape=(1, 28, 28)
                    )
                    row[name] = {
                        k: e.to_dict()[k]
                        for k in (
                            "matches",
                            "n",
                            "match_rate",
                            "p_value",
                            "verified",
                            "disagreements",
                            "conditional_p_value",
                        )
                    }
                    row[name]["threshold"] = e.threshold
                row["null_rate"] = 1 / 9
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                write(result, args.out)  # after every run, so a cut-short measurement keeps what it has
    result["environment"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started),
    }
    print(f"wrote {write(result, args.out)} in {result['environment']['seconds']} s")


def write(result: dict[str, Any], folder: str) -> Path:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "response-mark.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


if __name__ == "__main__":
    main()
