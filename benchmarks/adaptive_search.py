"""Adaptive attackers: the strongest setting of every strength knob within the 5-point budget.

A seeded subset of Fashion-MNIST is split as in the standard benchmark (the attacker holds a third); the
owner marks a CNN on its two thirds with 100 abstract triggers exactly as ``backmark reproduce`` trains its
FromScratch model. Then, for every knob of :data:`backmark.study.search.SEARCHES`, bisection finds
the strongest value that costs at most 5 points of test accuracy and records what it left of the mark
(the same search ``backmark reproduce`` runs and renders). The markdown table is the one reproduce writes.

    PYTHONPATH=src .venv/bin/python benchmarks/adaptive_search.py            # docs/adaptive-search.{json,md}
    PYTHONPATH=src .venv/bin/python benchmarks/adaptive_search.py --from-reproduce /tmp/backmark-results \
        --search training --threads 2 --out docs/adaptive-search-full.json

``--from-reproduce DIR`` searches the FromScratch model of a ``backmark reproduce`` run in DIR instead
(its checkpoint; the split and key re-derived from its seed, exactly as reproduce made them: the
baseline is checked against the run's), with the training-time knobs (``--search training``) that a
``reproduce --search cheap`` run leaves out.
    PYTHONPATH=src .venv/bin/python benchmarks/adaptive_search.py --train 3000 --epochs 1 --search cheap \\
        --out /tmp/a.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import MappingProxyType

import torch
from _study import owner_config, run_record, study_data, study_options, study_sizes, write_result
from torch import nn

from backmark.data import ImageDataset, load_dataset
from backmark.embed import TrainConfig, embed_from_scratch
from backmark.keys import MarkingKey
from backmark.models import load_checkpoint
from backmark.study import Baseline, Trial, measure
from backmark.study.owner import derived_key
from backmark.study.reproduce import INFERENCE_TIME, search_knobs
from backmark.study.reproduce_report import render_searches
from backmark.study.search import SEARCHES, search_all
from backmark.study.split import ThreatSplit, threat_model_split
from backmark.verify import DEFAULT_ALPHA


def reproduced(folder: Path) -> tuple[nn.Module, ImageDataset, ThreatSplit, MarkingKey, int]:
    """The FromScratch model of the reproduce run in ``folder``, its data, split, key and seed."""
    run = json.loads((folder / "results.json").read_text())
    data = load_dataset(run["dataset"], download=False)
    s = run["settings"]
    if s["train_size"] or s["test_size"]:
        data = data.subset(train=s["train_size"], test=s["test_size"], seed=run["seed"])
    split = threat_model_split(data, attacker_fraction=s["attacker_fraction"], seed=run["seed"])
    kind = s.get("kind", "abstract")
    key = derived_key(split.owner, size=run["key_size"], seed=run["seed"], purpose="reproduce", kind=kind)
    model, _ = load_checkpoint(folder / "models" / "from-scratch.pt")
    return model, data, split, key, int(run["seed"])


def check_baseline(folder: Path, baseline: Baseline) -> None:
    """The model answers as it did in the run: the same test accuracy and trigger matches."""
    row = next(
        m for m in json.loads((folder / "results.json").read_text())["models"] if m["name"] == "from-scratch"
    )
    if abs(row["test_acc"] - baseline.test_acc) > 1e-9 or row["matches"] != baseline.evidence.matches:
        raise SystemExit(f"{folder}: the FromScratch model does not answer as in the run (a different key?)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study_options(parser)
    parser.add_argument("--search", choices=("all", "cheap", "training"), default="all")
    parser.add_argument("--from-reproduce", type=Path, metavar="DIR", help="search a reproduce run's model")
    parser.add_argument("--out", type=Path, default=Path("docs/adaptive-search.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    config: TrainConfig | None = None
    if args.from_reproduce is not None:
        marked, data, split, key, seed = reproduced(args.from_reproduce)
    else:
        data, split = study_data(args)
        seed = args.seed
        key = derived_key(split.owner, size=100, seed=seed, purpose="adaptive-search")
        config = owner_config(args)
        marked = embed_from_scratch(split.owner, key, config=config, progress=False, device="cpu").model
    test = (data.test_x, data.test_y)
    trial = Trial(marked, key, key.verification_key(), split.attacker_data, test)
    baseline = measure(trial)
    print(f"marked: test acc {baseline.test_acc:.2%}, triggers {baseline.evidence.matches}/100", flush=True)
    if args.from_reproduce is not None:
        check_baseline(args.from_reproduce, baseline)
    chosen = (
        [k for k in SEARCHES if k.attack not in INFERENCE_TIME]
        if args.search == "training"
        else search_knobs(args.search)
    )
    knobs = [replace(k, fixed=MappingProxyType({**k.fixed, "seed": seed})) for k in chosen]
    found = search_all(trial, knobs, baseline=baseline, log=print)
    searches = [f.to_dict() for f in found]
    result = {
        **study_sizes(data, split),
        "alpha": DEFAULT_ALPHA,
        "owner_config": None if config is None else asdict(config),
        "from_reproduce": None if args.from_reproduce is None else str(args.from_reproduce),
        "marked": {"test_acc": baseline.test_acc, **baseline.evidence.to_dict()},
        "searches": searches,
        **run_record("adaptive_search.py", args, start, files=("out",)),
    }
    write_result(args.out, result)
    args.out.with_suffix(".md").write_text("\n".join(render_searches(searches)) + "\n")


if __name__ == "__main__":
    main()
