"""Verification latency for 100 triggers: checkpoint, TorchScript, ONNX, and HTTP on loopback.

    python benchmarks/verify_latency.py [--runs 15] [--threads 1] [--no-doc]

Each row is the median wall time of ``--runs`` calls of :func:`backmark.verify.verify` on an opened
target (the 200 commitment checks included, loading and connecting excluded; those are the "open"
column). The model is the demo's CNN with untrained weights: latency does not depend on the weights. The
HTTP rows query ``backmark serve`` running in a separate process on 127.0.0.1, so client and server do not
share an interpreter. Every engine (torch here and in the server, onnxruntime) runs on ``--threads``
threads, 1 by default: on a shared machine, two threads per engine contend for the cores and the numbers
measure the contention, not the target. The table, with the settings and the machine's load, replaces
the section between the markers in docs/targets.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from backmark.export import export_model
from backmark.keys import MarkingKey, generate_key
from backmark.models import ModelInfo, create_model, load_checkpoint, save_checkpoint
from backmark.targets import (
    ClientConfig,
    DecoyTarget,
    JsonTarget,
    ModuleTarget,
    OnnxTarget,
    Target,
    TorchScriptTarget,
    V2Target,
)
from backmark.verify import verify

TRIGGERS = 100  # the paper's trigger set size
SHAPE = (1, 28, 28)  # Fashion-MNIST
DECOYS = 400  # four decoys per trigger in the hygiene row
DOC = Path(__file__).resolve().parents[1] / "docs" / "targets.md"
BEGIN, END = "<!-- verify-latency:begin -->", "<!-- verify-latency:end -->"


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: first-call allocations, connection set-up, onnxruntime's lazy initialisation
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _timed_open(make: Callable[[], Target]) -> tuple[Target, float]:
    start = time.perf_counter()
    target = make()
    return target, time.perf_counter() - start


def _start_server(ckpt: Path, threads: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "backmark", "serve", str(ckpt), "--port", "0", "--name", "m", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving m at "):
        proc.kill()
        raise SystemExit(f"backmark serve did not start: {line!r}")
    return proc, line.split()[3].removesuffix("/v2/models/m")


def measure(runs: int, threads: int, workdir: Path) -> list[tuple[str, float, float]]:
    """(row name, open seconds, median verify seconds) for every target kind."""
    key: MarkingKey = generate_key(num_classes=10, input_shape=SHAPE, size=TRIGGERS, seed=b"\x07" * 32)
    vk = key.verification_key()
    ckpt = workdir / "m.pt"
    model = create_model("cnn", num_classes=10, input_shape=SHAPE)
    save_checkpoint(ckpt, model, ModelInfo("cnn", {}, SHAPE, 10))
    export_model(model, workdir / "m.onnx", format="onnx", input_shape=SHAPE)
    export_model(model, workdir / "m.ts", format="torchscript", input_shape=SHAPE)
    decoys = torch.randint(
        0, 256, (DECOYS, *SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )

    rows: list[tuple[str, float, float]] = []

    def row(name: str, make: Callable[[], Target]) -> None:
        target, opened = _timed_open(make)
        rows.append((name, opened, _median_seconds(lambda: verify(target, key, vk), runs)))
        print(f"{name:44} open {opened * 1e3:8.1f} ms   verify {rows[-1][2] * 1e3:8.1f} ms", file=sys.stderr)

    row("checkpoint (ModuleTarget)", lambda: ModuleTarget(load_checkpoint(ckpt)[0]))
    row("TorchScript (torch.jit)", lambda: TorchScriptTarget(workdir / "m.ts"))
    row("ONNX (onnxruntime, CPU)", lambda: OnnxTarget(workdir / "m.onnx", threads=threads))
    proc, url = _start_server(ckpt, threads)
    try:
        row("HTTP v2, loopback, batch 64", lambda: V2Target(f"{url}/v2/models/m"))
        row(
            "HTTP v2, loopback, batch 100",
            lambda: V2Target(f"{url}/v2/models/m", config=ClientConfig(batch_size=100)),
        )
        row("HTTP JSON contract, loopback, batch 64", lambda: JsonTarget(f"{url}/predict/m"))
        row(
            f"HTTP v2, loopback, batch 64, {DECOYS} decoys",
            lambda: DecoyTarget(V2Target(f"{url}/v2/models/m"), decoys, count=DECOYS),
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


def table(
    rows: list[tuple[str, float, float]], runs: int, threads: int, load: tuple[float, float, float]
) -> str:
    base = rows[0][2]
    shape = "x".join(map(str, SHAPE))
    setting = (
        f"Command: `python benchmarks/verify_latency.py --runs {runs} --threads {threads}`. "
        f"{TRIGGERS} triggers of {shape}, 10 classes, the `cnn` architecture; median of {runs} runs after "
        f"one warm-up. Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
        f"{ort_version()}, {os.cpu_count()} CPUs, {threads} thread(s) per engine; load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) when it started."
    )
    lines = [
        BEGIN,
        setting,
        "",
        "| target | open (ms) | verify (ms) | vs checkpoint |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {opened * 1e3:.1f} | {median * 1e3:.1f} | {median / base:.1f}x |"
        for name, opened, median in rows
    ]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per target (default 15)")
    parser.add_argument("--threads", type=int, default=1, help="threads per inference engine (default 1)")
    parser.add_argument(
        "--no-doc", action="store_true", help="print the table; do not update docs/targets.md"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args.runs, args.threads, Path(tmp))
    section = table(rows, args.runs, args.threads, load)
    print(section)
    if not args.no_doc:
        text = DOC.read_text(encoding="utf-8")
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{DOC} has no {BEGIN} ... {END} section to replace")
        head, rest = text.split(BEGIN, 1)
        DOC.write_text(head + section + rest.split(END, 1)[1], encoding="utf-8")
        print(f"updated {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
