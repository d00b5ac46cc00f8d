"""Wall time, CPU time and peak memory of the demo and of ``reproduce``, and how reproduce's time splits.

Runs ``backmark demo`` and ``backmark reproduce`` (serially and with ``--workers 2``) as child processes
and reads their resource use from the kernel (``wait4``); checks that the two reproduce runs found the
same numbers, times aside.

    python benchmarks/pipeline.py                 # the --fast runs; writes docs/benchmarks-pipeline.md
    python benchmarks/pipeline.py --full          # the full demo and reproduce (long)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def run(argv: list[str]) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak resident memory (MiB) of ``python -m backmark ARGV``."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "backmark", *argv], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"backmark {' '.join(argv)} failed with status {proc.returncode}")
    return {
        "wall": time.perf_counter() - start,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_mib": usage.ru_maxrss / 1024,  # KiB on Linux
    }


def without_times(value: Any) -> Any:
    """``value`` (parsed JSON) without its ``seconds`` fields, command line and creation time."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in ("seconds", "command", "created")}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def split(folder: Path, total: float) -> list[str]:
    """reproduce's time by stage, from its results.json and the victims' report.json files."""
    summary = json.loads((folder / "results.json").read_text())
    owner = sum(m["seconds"] for m in summary["models"])
    rows = [f"| training the owner's models ({len(summary['models'])}) | {owner:.0f} |"]
    accounted = owner
    for victim in ("from-scratch", "pretrained"):
        report = json.loads((folder / victim / "report.json").read_text())
        outcomes = report["entries"]
        seconds = sum(o["seconds"] for o in outcomes)
        rows.append(f"| {len(outcomes)} attacks on the {victim} model | {seconds:.0f} |")
        accounted += seconds
    rows.append(
        f"| the rest (data, keys, verification, per-epoch measurements, reports, figures) | "
        f"{total - accounted:.0f} |"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the full runs instead of --fast")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-pipeline.md"))
    args = parser.parse_args()
    fast = [] if args.full else ["--fast"]
    rows, splits = [], []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        runs = {
            "demo": ["demo", *fast, "--out", str(t / "demo"), "-q"],
            "reproduce": ["reproduce", *fast, "--out", str(t / "serial"), "-q"],
            "reproduce --workers 2": [
                "reproduce",
                *fast,
                "--out",
                str(t / "workers"),
                "-q",
                "--workers",
                "2",
            ],
        }
        for name, argv in runs.items():
            r = run(argv)
            rows.append(
                f"| `backmark {name}{' --fast' if fast else ''}` | {r['wall']:.0f} | {r['cpu']:.0f} | "
                f"{r['peak_mib']:.0f} |"
            )
            print(rows[-1], flush=True)
            if name.startswith("reproduce"):
                folder = t / ("serial" if name == "reproduce" else "workers")
                summary = json.loads((folder / "results.json").read_text())
                splits.append((name, split(folder, summary["seconds"])))
        same = all(
            without_times(json.loads((t / "serial" / f).read_text()))
            == without_times(json.loads((t / "workers" / f).read_text()))
            for f in ("results.json", "from-scratch/report.json", "pretrained/report.json")
        )
    lines = [
        "# The demo and reproduce: time and memory",
        "",
        f"Produced by `python benchmarks/pipeline.py{' --full' if args.full else ''}` ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}). Wall time is from",
        "start to exit; CPU time is user plus system time of the process (with its worker processes'",
        "when they are waited for); peak memory is the largest resident set of the process. The machine",
        "was shared with other jobs, so wall times are longer than on a quiet machine.",
        "",
        "| command | wall s | CPU s | peak memory MiB |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    for name, stage_rows in splits:
        lines += [
            f"`backmark {name}` by stage (seconds, wall):",
            "",
            "| stage | s |",
            "|---|---|",
            *stage_rows,
            "",
        ]
    lines.append(
        "The serial and the 2-worker reproduce runs "
        + (
            "found the same numbers (every field of results.json and of both report.json files, times aside)."
            if same
            else "DIFFERED in their numbers (times aside)."
        )
    )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
