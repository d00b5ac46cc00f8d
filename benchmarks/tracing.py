"""Traitor tracing measured (issue 9): one base model, one marked copy per licensee, each copy traced.

Trains a clean CNN on Fashion-MNIST (the base), marks a copy for each of N licensees with a key of its
own (PreTrained embedding: 100 abstract triggers, lr 0.01, until every trigger is answered), then traces
every copy and the base with all N keys in one query each. Reports, per copy: the licensee named, its
key's matches and p-value, the most matches any other key got, the copy's test accuracy against the
base's, and the seconds its marking took.

    .venv/bin/python benchmarks/tracing.py                       # writes docs/tracing.json and .md
    .venv/bin/python benchmarks/tracing.py --copies 3 --train-subset 6000 --out /tmp/t   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from backmark.data import load_dataset
from backmark.embed import PRETRAINED_CONFIG, TrainConfig, embed_pretrained, train_clean
from backmark.keys import generate_key
from backmark.verify.trace import trace

NAMES = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "cyberdyne", "wonka"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the base model")
    parser.add_argument("--out", default="docs", help="folder for tracing.json and tracing.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_dataset("fashion-mnist", progress=False)
    if args.train_subset:
        data = data.subset(train=args.train_subset, seed=0)
    start = time.perf_counter()
    base = train_clean(data, config=TrainConfig(epochs=args.epochs), progress=False)
    base_seconds = time.perf_counter() - start
    base_acc = base.info.meta["test_acc"]
    print(f"base: {base_acc:.2%} in {base_seconds:.0f} s", flush=True)
    keys, copies = [], []
    for name in NAMES[: args.copies]:
        mk = generate_key(
            num_classes=10,
            input_shape=(1, 28, 28),
            kind="abstract",
            seed=hashlib.sha256(name.encode()).digest(),
        )
        keys.append((name, mk, mk.verification_key()))
        start = time.perf_counter()
        marked = embed_pretrained(base.model, base.info, data, mk, config=PRETRAINED_CONFIG, progress=False)
        seconds = time.perf_counter() - start
        copies.append((name, marked, seconds))
        meta = marked.info.meta
        print(
            f"{name}: {meta['test_acc']:.2%}, triggers {meta['trigger_acc']:.0%}, {seconds:.0f} s", flush=True
        )
    rows = []
    for name, marked, seconds in copies:
        result = trace(marked.model, keys)
        mine = next(o for o in result.outcomes if o.name == name)
        others = [o.evidence.matches for o in result.outcomes if o.name != name]
        rows.append(
            {
                "licensee": name,
                "named": result.named,
                "verified_keys": [o.name for o in result.verified],
                "matches": mine.evidence.matches,
                "threshold": mine.evidence.threshold,
                "p_value_corrected": mine.p_value_corrected,
                "most_other_matches": max(others) if others else None,
                "test_acc": marked.info.meta["test_acc"],
                "accuracy_cost_points": 100 * (base_acc - marked.info.meta["test_acc"]),
                "epochs": marked.info.meta["epochs_run"],
                "mark_seconds": seconds,
            }
        )
    clean = trace(base.model, keys)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "train_images": len(data.train_x),
        "base_test_acc": base_acc,
        "base_seconds": base_seconds,
        "copies": rows,
        "base_traced": {
            "named": clean.named,
            "most_matches": max(o.evidence.matches for o in clean.outcomes),
        },
        "right_licensee_named": sum(r["named"] == r["licensee"] for r in rows),
        "other_keys_verified": sum(len(r["verified_keys"]) - (r["named"] == r["licensee"]) for r in rows),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracing.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "| licensee | named | matches (threshold) | most matches of another key | test acc. | cost (points) "
        "| epochs | marking time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['licensee']} | {r['named']} | {r['matches']}/100 ({r['threshold']}) "
            f"| {r['most_other_matches']}/100 | {r['test_acc']:.2%} | {r['accuracy_cost_points']:+.2f} "
            f"| {r['epochs']} | {r['mark_seconds']:.0f} s |"
        )
    (out / "tracing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(
        f"base traced: named {clean.named}; right licensee named for {report['right_licensee_named']} "
        f"of {len(rows)}"
    )


if __name__ == "__main__":
    main()
