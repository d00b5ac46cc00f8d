"""What the attack benchmarks share: the owner's data and the attacker's third, and the run's record.

Used by scheme_attacks.py, sok_attacks.py, heldout_triggers.py, adaptive_search.py and
embedding_options.py (run as scripts from the repository root: ``PYTHONPATH=src .venv/bin/python
benchmarks/NAME.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from backmark.data import ImageDataset, load_dataset
from backmark.robustness.split import ThreatSplit, threat_model_split


def study_data(args: argparse.Namespace) -> tuple[ImageDataset, ThreatSplit]:
    """Fashion-MNIST (``--train`` images before the split, ``--test`` test images, seeded by ``--seed``),
    split as in the standard benchmark: the attacker holds a third."""
    data = load_dataset("fashion-mnist", download=False).subset(
        train=args.train, test=args.test, seed=args.seed
    )
    return data, threat_model_split(data, seed=args.seed)


def study_sizes(data: ImageDataset, split: ThreatSplit) -> dict[str, Any]:
    """The dataset and the sizes of the owner's, the attacker's and the test images, for a result."""
    return {
        "dataset": data.name,
        "owner_size": len(split.owner.train_x),
        "attacker_size": len(split.attacker.train_x),
        "test_size": len(data.test_x),
    }


def run_record(
    script: str, args: argparse.Namespace, start: float, *, files: tuple[str, ...] = ("out",)
) -> dict[str, Any]:
    """The command that reproduces the run (``files``: options naming outputs, left out), its wall time
    and what it ran on."""
    options = " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in vars(args).items()
        if k not in files and v is not None and v is not False  # (0 == False: a seed of 0 stays)
    )
    return {
        "command": f"PYTHONPATH=src .venv/bin/python benchmarks/{script} {options}",
        "seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def write_result(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path} ({result['seconds']:.0f} s)")
