"""Adaptive attackers: the strongest setting of every strength knob within the 5-point budget.

A seeded subset of Fashion-MNIST is split as in the standard benchmark (the attacker holds a third); the
owner marks a CNN on its two thirds with 100 abstract triggers exactly as ``backmark reproduce`` trains its
FromScratch model. Then, for every knob of :data:`backmark.robustness.search.SEARCHES`, bisection finds
the strongest value that costs at most 5 points of test accuracy and records what it left of the mark
(the same search ``backmark reproduce`` runs and renders). The markdown table is the one reproduce writes.

    PYTHONPATH=src .venv/bin/python benchmarks/adaptive_search.py            # docs/adaptive-search.{json,md}
    PYTHONPATH=src .venv/bin/python benchmarks/adaptive_search.py --train 3000 --epochs 1 --search cheap \\
        --out /tmp/a.json
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import MappingProxyType

import torch
from _study import run_record, study_data, study_sizes, write_result

from backmark.embed import TrainConfig, embed_from_scratch
from backmark.report.owner import derived_key
from backmark.robustness import measure
from backmark.robustness.reproduce import search_knobs
from backmark.robustness.results import render_searches
from backmark.robustness.search import search_all
from backmark.verify import DEFAULT_ALPHA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=30000, help="training images before the split")
    parser.add_argument("--test", type=int, default=None, help="test images (default: all 10000)")
    parser.add_argument("--epochs", type=int, default=5, help="the owner's training epochs")
    parser.add_argument("--search", choices=("all", "cheap"), default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("docs/adaptive-search.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    data, split = study_data(args)
    test = (data.test_x, data.test_y)
    key = derived_key(split.owner, size=100, seed=args.seed, purpose="adaptive-search")
    vk = key.verification_key()
    config = TrainConfig(epochs=args.epochs, lr=0.05, triggers_per_batch=2, seed=args.seed + 1)
    marked = embed_from_scratch(split.owner, key, config=config, progress=False, device="cpu").model
    baseline = measure(marked, key, vk, test)
    print(f"marked: test acc {baseline.test_acc:.2%}, triggers {baseline.evidence.matches}/100", flush=True)
    knobs = [
        replace(k, fixed=MappingProxyType({**k.fixed, "seed": args.seed})) for k in search_knobs(args.search)
    ]
    found = search_all(marked, knobs, key, vk, split.attacker_data, test, baseline=baseline, log=print)
    searches = [f.to_dict() for f in found]
    result = {
        **study_sizes(data, split),
        "alpha": DEFAULT_ALPHA,
        "owner_config": asdict(config),
        "marked": {"test_acc": baseline.test_acc, **baseline.evidence.to_dict()},
        "searches": searches,
        **run_record("adaptive_search.py", args, start, files=("out",)),
    }
    write_result(args.out, result)
    args.out.with_suffix(".md").write_text("\n".join(render_searches(searches)) + "\n")


if __name__ == "__main__":
    main()
