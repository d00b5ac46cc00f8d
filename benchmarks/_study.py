"""What the attack benchmarks share as scripts: their options, the owner's data and the attacker's third,
the owner's marked model and its training, one attack's row, and the run's record. Attacks are measured by
the library's one pipeline (:mod:`backmark.study.measure`: its budget and its removal rule).

Used by scheme_attacks.py, sok_attacks.py, heldout_triggers.py, adaptive_search.py and
embedding_options.py (run as scripts from the repository root: ``PYTHONPATH=src .venv/bin/python
benchmarks/NAME.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backmark.attacks import Attack, AttackData
from backmark.data import ImageDataset, load_dataset
from backmark.embed import TrainConfig, embed_from_scratch
from backmark.keys import MarkingKey, VerificationKey
from backmark.study.measure import Baseline, Trial, attack_and_measure, measure
from backmark.study.owner import derived_key
from backmark.study.split import ThreatSplit, threat_model_split
from backmark.verify import Evidence

KEY_SIZE = 100  # the owner's triggers, as in the reproduction
OWNER_LR = 0.05  # the reproduction's FromScratch training: one-cycle peak rate ...
OWNER_TRIGGERS_PER_BATCH = 2  # ... and the paper's 2 triggers per batch of 100


def study_options(parser: argparse.ArgumentParser, *, epochs: int = 5, threads: int = 1) -> None:
    """The options every study has: the subset (``--train``, ``--test``), the owner's ``--epochs``, the
    ``--seed`` and the torch ``--threads``."""
    parser.add_argument("--train", type=int, default=30000, help="training images before the split")
    parser.add_argument("--test", type=int, default=None, help="test images (default: all 10000)")
    parser.add_argument("--epochs", type=int, default=epochs, help="the owner's training epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=threads, help="torch CPU threads")


def study_data(args: argparse.Namespace) -> tuple[ImageDataset, ThreatSplit]:
    """Fashion-MNIST (``--train`` images before the split, ``--test`` test images, seeded by ``--seed``),
    split as in the standard benchmark: the attacker holds a third."""
    data = load_dataset("fashion-mnist", download=False).subset(
        train=args.train, test=args.test, seed=args.seed
    )
    return data, threat_model_split(data, seed=args.seed)


def owner_config(args: argparse.Namespace) -> TrainConfig:
    """The owner's training as ``backmark reproduce`` trains its FromScratch model (``--epochs``, seed
    ``--seed`` + 1)."""
    return TrainConfig(
        epochs=args.epochs, lr=OWNER_LR, triggers_per_batch=OWNER_TRIGGERS_PER_BATCH, seed=args.seed + 1
    )


def evidence(e: Evidence) -> dict[str, Any]:
    return {"matches": e.matches, "n": e.n, "p_value": e.p_value, "verified": e.verified}


@dataclass(frozen=True)
class Owner:
    """The owner's marked model, its key, how it was trained and what it scores before any attack."""

    key: MarkingKey
    vk: VerificationKey
    config: TrainConfig
    model: nn.Module
    baseline: Baseline
    seconds: float

    def trial(self, attacker: AttackData, data: ImageDataset) -> Trial:
        """The owner's model, key pair, ``attacker``'s data and the test set: what an attack is run on."""
        return Trial(self.model, self.key, self.vk, attacker, (data.test_x, data.test_y))

    def record(self) -> dict[str, Any]:
        return {
            "test_acc": self.baseline.test_acc,
            "owner": evidence(self.baseline.evidence),
            "seconds": round(self.seconds, 1),
        }


def marked_owner(args: argparse.Namespace, data: ImageDataset, split: ThreatSplit, purpose: str) -> Owner:
    """A derived key of :data:`KEY_SIZE` abstract triggers and a FromScratch model marked with it on the
    owner's two thirds (:func:`owner_config`), measured on the test set."""
    start = time.perf_counter()
    key = derived_key(split.owner, size=KEY_SIZE, seed=args.seed, purpose=purpose)
    vk = key.verification_key()
    config = owner_config(args)
    model = embed_from_scratch(split.owner, key, config=config, progress=False, device="cpu").model
    seconds = time.perf_counter() - start
    baseline = measure(Trial(model, key, vk, split.attacker_data, (data.test_x, data.test_y)))
    owner = Owner(key, vk, config, model, baseline, seconds)
    e = baseline.evidence
    print(f"marked: test acc {baseline.test_acc:.2%}, owner {e.matches}/{e.n} ({seconds:.0f} s)")
    return owner


def attack_row(
    attack: Attack, owner: Owner, attacker: AttackData, data: ImageDataset
) -> tuple[dict[str, Any], nn.Module]:
    """Run ``attack`` on the owner's model (:func:`backmark.study.measure.attack_and_measure`): the
    result's row (accuracy, the owner's evidence, whether the mark was removed within
    :data:`~backmark.study.measure.MAX_ACC_DROP`) and the attacked model."""
    attacked, o = attack_and_measure(owner.trial(attacker, data), attack, baseline=owner.baseline)
    row = {
        "attack": o.label,
        "params": attack.params(),
        "seconds": round(o.seconds, 1),
        "test_acc_before": o.test_acc_before,
        "test_acc_after": o.test_acc_after,
        "acc_drop_points": round(100 * o.acc_drop, 2),
        "owner": evidence(o.evidence),
        "removed": o.removed,
    }
    return row, attacked


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
