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


# Fields that differ between runs by design: times, the command line, the creation time, and the key id
# (a derived key's commitment openings are fresh each run).
SKIPPED = ("seconds", "command", "created", "key_id")


def without_times(value: Any) -> Any:
    """``value`` (parsed JSON) without the fields in :data:`SKIPPED`."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in SKIPPED}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def _load(folder: Path, name: str) -> Any:
    """A JSON output with the run's folder written as OUT, so two runs' paths compare equal."""
    return without_times(json.loads((folder / name).read_text().replace(str(folder), "OUT")))


def diff(a: Any, b: Any, where: str) -> list[str]:
    """Where two parsed JSON values differ (their paths), at most one entry per differing leaf."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in diff(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def split(folder: Path, total: float) -> list[str]:
    """reproduce's time by stage, from its results.json and the victims' report.json files."""
    summary = json.loads((folder / "results.json").read_text())
    owner = sum(m["seconds"] for m in summary["models"])
    rows = [
        f"| the whole run | {total:.0f} |",
        f"| training the owner's models ({len(summary['models'])}) | {owner:.0f} |",
    ]
    accounted = owner
    for victim in ("from-scratch", "pretrained"):
        report = json.loads((folder / victim / "report.json").read_text())
        outcomes = report["entries"]
        seconds = sum(o["seconds"] for o in outcomes)
        rows.append(f"| {len(outcomes)} attacks on the {victim} model (sum of their times) | {seconds:.0f} |")
        accounted += seconds
    rows.append(
        f"| the rest of the run (data, keys, verification, per-epoch measurements, reports, figures; "
        f"less the attacks' overlap with workers) | {total - accounted:.0f} |"
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
        differences = [
            d
            for f in ("results.json", "from-scratch/report.json", "pretrained/report.json")
            for d in diff(_load(t / "serial", f), _load(t / "workers", f), f)
        ]
        for d in differences[:10]:
            print("differs:", d, flush=True)
    lines = [
        "# The demo and reproduce: time and memory",
        "",
        f"Produced by `python benchmarks/pipeline.py{' --full' if args.full else ''}` ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}). Wall time is from",
        "start to exit; CPU time is user plus system time of the process (with its worker processes'",
        "when they are waited for); peak memory is the largest resident set of the process. The machine",
        "may be shared with other jobs, which makes wall times longer than on a quiet machine.",
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
            "found the same numbers (every field of results.json and of both report.json files, times, "
            "paths and key id aside)."
            if not differences
            else f"DIFFERED in {len(differences)} fields (times aside), first: {differences[0]}"
        )
    )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
