"""Innocents better than the owner's models, against every choice of the deployed model (docs/contrast.md).

The probe test assumes that a model made without the deployed model sides with it on at most 1/2 + delta
of the probes where it and a sibling differ. Where the two differ, often one of them is right: a model
that is right more often than the owner's models sides with whichever of them is right more often, so if
the deployed model happens to be the most accurate of its family, a better innocent model leans toward it.
The most such a lean can reach is the rate of a model that answers every probe correctly (the `correct`
rate below, computed from the pool's labels). This benchmark measures how far real, better models go:
4 independent models of the benchmark's CNN trained on every training image of Fashion-MNIST (60,000:
the owner's and the attacker's together, as a competitor with the whole public dataset would), about 2
points more accurate than the owner's, taken as suspects with the other innocents below against every
family with each of its k + 1 models in turn as the deployed one (the choice is random at marking time,
so each is a family the owner could have deployed):

- `benchmark`: benchmarks/contrast.py's cached family (5 models, 3 epochs each), with its 20 cached
  innocents as well;
- `study, seed B` for each of `--families` (default 0, 7, 13): the FromScratch family of `backmark
  reproduce --seed B` (the study's recipe, key and seeds; B = 0 is docs/results.md's), retrained with
  study.owner.owner_models and cached, with innocents of the study's regime: its clean model and
  `--innocents` (default 6) models of its recipe without a key from their own seeds, alternately on the
  attacker's data and on the owner's images (as benchmarks/contrast_holdout.py trains them).

Every model of the other families (their k + 1 models, marked with their own keys, and their innocents)
is an innocent too: none was trained from any model of the family it is measured against.

Rates are over the whole test pool (every image against every sibling), p-values at the probe test's
default margin and draws (the expected decided count at 100,000 draws), as benchmarks/contrast_holdout.py
counts them.

    PYTHONPATH=src python benchmarks/contrast.py --out docs/contrast.json   # trains its cache first
    PYTHONPATH=src python benchmarks/contrast_strong.py --out docs/contrast-strong.json
    PYTHONPATH=src python benchmarks/contrast_strong.py --render docs/contrast-strong.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import torch
from contrast import (  # benchmarks/contrast.py, whose cache this reuses
    benchmark_plan,
    cached,
    cached_owners,
    suspect_slug,
)
from contrast_holdout import study_config, study_owned
from contrast_pool import NONCE, SUSPECTS
from contrast_study_kinds import SIBLINGS, over_pool, p_value

from backmark.constants import CONTRAST_DELTA, CONTRAST_PROBES
from backmark.contrast import answers, draw, probe_test
from backmark.data import load_dataset
from backmark.embed import TrainConfig, train_clean
from backmark.models import load_checkpoint, save_checkpoint
from backmark.study.reproduce import Settings
from backmark.study.split import threat_model_split

TARGET_P = 1e-6  # the claim's level
OLD_DELTAS = (0.05, 0.08, 0.11)  # earlier margins (0.08: two families; 0.11: no cross-family innocents)
STRONG = ((2000, 10), (2001, 10), (2002, 20), (2003, 20))  # (seed, epochs) of the better innocents


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def study_family(
    cache: Path, data: Any, base: int, innocents: int
) -> tuple[list[torch.nn.Module], dict[str, torch.nn.Module]]:
    """The FromScratch family of `backmark reproduce --seed base` (deployed model first; base 0 is
    docs/results.md's), and innocents of the study's regime: its clean model and ``innocents`` models of
    its recipe without a key, from their own seeds, alternately on the attacker's data and on the owner's
    images (as benchmarks/contrast_holdout.py trains them). All cached."""
    split = threat_model_split(data, attacker_fraction=Settings().attacker_fraction, seed=base)
    config = study_config(base)
    names = ("from-scratch", *SIBLINGS, "clean")
    paths = {n: cache / f"study{base}-{n}.pt" for n in names}
    if not all(p.is_file() for p in paths.values()):
        owned = study_owned(split.owner, config)
        for n in names:
            save_checkpoint(paths[n], owned[n].trained.model, owned[n].trained.info)
    models = {n: load_checkpoint(p)[0].eval() for n, p in paths.items()}
    others = {"the study's clean model": models["clean"]}
    for j in range(innocents):
        seed = base + 1000 + j
        data_j, where = (split.attacker, "attacker") if j % 2 == 0 else (split.owner, "owner")
        model, _, _ = cached(
            cache,
            f"study{base}-innocent-{where}-s{seed}",
            lambda data_j=data_j, seed=seed: (lambda t: (t.model, t.info))(
                train_clean(data_j, config=replace(config, seed=seed), progress=False)
            ),
        )
        others[f"study regime, {where}'s data, seed {seed}"] = model.eval()
    return [models[n] for n in ("from-scratch", *SIBLINGS)], others


def from_other_families(
    groups: dict[str, tuple[list[torch.nn.Module], dict[str, torch.nn.Module]]], name: str
) -> dict[str, torch.nn.Module]:
    """Every model of the families other than ``name`` (their members, marked with their own keys, and
    their innocents): each was trained without any model of ``name``, so each is an innocent for it."""
    return {
        f"other family ({other}): {label}": model
        for other, (family, own) in groups.items()
        if other != name
        for label, model in [*((f"model {i}", m) for i, m in enumerate(family)), *own.items()]
    }


def measure(
    family: list[torch.nn.Module], suspects: dict[str, torch.nn.Module], images: torch.Tensor, y: torch.Tensor
) -> dict[str, Any]:
    """Every family member in turn as the deployed model: its accuracy, the correct model's rate and every
    suspect's rate and p-value over the pool."""
    said = [answers(m, images, num_classes=None) for m in family]
    theirs = {n: answers(m, images, num_classes=None) for n, m in suspects.items()}
    accuracy = {n: float((a == y).float().mean()) for n, a in theirs.items()}
    family_accuracy = [float((a == y).float().mean()) for a in said]
    rows = []
    for k, deployed in enumerate(said):
        others = [a for i, a in enumerate(said) if i != k]
        correct, _ = over_pool(deployed, others, y)
        models = {}
        for n, a in theirs.items():
            rate, share = over_pool(deployed, others, a)
            models[n] = {"rate": rate, "decided_share": share, "p_value": p_value(rate, share)}
        rows.append(
            {
                "deployed": k,
                "accuracy": family_accuracy[k],
                "family_accuracy": family_accuracy,
                "correct_rate": correct,
                "models": models,
            }
        )
    return {"suspect_accuracy": accuracy, "choices": rows}


def copies_at(
    cache: Path, data: Any, bench: list[torch.nn.Module], deltas: tuple[float, ...]
) -> dict[str, Any]:
    """benchmarks/contrast.py's 11 copies against its actual deployed model, as contrast_pool.py draws
    (100,000 from the test images, its nonce): rate and p-value at each margin."""
    plan = benchmark_plan(len(bench) - 1)
    drawn = draw(data.test_x, kind="natural", count=CONTRAST_PROBES, nonce=NONCE)
    a = answers(bench[plan.deployed], drawn.images, num_classes=None)[drawn.index]
    others = torch.stack(
        [
            answers(m, drawn.images, num_classes=None)[drawn.index]
            for i, m in enumerate(bench)
            if i != plan.deployed
        ]
    )
    rows = {}
    for name in SUSPECTS:
        path = cache / f"{suspect_slug(name)}.pt"
        seen = answers(load_checkpoint(path)[0].eval(), drawn.images, num_classes=None)[drawn.index]
        tests = [probe_test(a, others, seen, delta=d) for d in deltas]
        rows[name] = {
            "rate": tests[0].rate,
            "p_values": {f"{d:g}": e.p_value for d, e in zip(deltas, tests, strict=True)},
        }
    return {"deployed": plan.deployed, "copies": rows}


def render(result: dict[str, Any]) -> str:
    """Markdown: per family and deployed model, the correct model's rate, the better innocents' rates and
    the other innocents' range (bold: p < 1e-6 at the default margin)."""

    def mark(r: dict[str, Any]) -> str:
        return f"**{r['rate']:.3f}**" if r["p_value"] < TARGET_P else f"{r['rate']:.3f}"

    lines = []
    every = []
    excess = []  # each rate above max(1/2, the correct model's rate): the lean toward accuracy taken out
    for name, fam in result["families"].items():
        every += [r["rate"] for c in fam["choices"] for r in c["models"].values()]
        excess += [
            r["rate"] - max(0.5, c["correct_rate"]) for c in fam["choices"] for r in c["models"].values()
        ]
        strong = [n for n in fam["suspect_accuracy"] if n.startswith("better")]
        acc = ", ".join(f"{fam['suspect_accuracy'][n]:.2%}" for n in strong)
        lines += [
            f"Family `{name}` (better innocents at {acc}; bold: p < {TARGET_P:g} at delta "
            f"{result['delta']:g}, {result['draws']:,} draws):",
            "",
            "| deployed | its accuracy (family's range) | correct model | better innocents | other innocents "
            "(range) | every innocent: mean, largest (its p) | flagged |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in fam["choices"]:
            m = c["models"]
            flagged = sum(r["p_value"] < TARGET_P for r in m.values())
            cells = ", ".join(mark(m[n]) for n in strong)
            rest = [r["rate"] for n, r in m.items() if n not in strong]
            top = max(m.values(), key=lambda r: r["rate"])
            mean = sum(r["rate"] for r in m.values()) / len(m)
            fa = c["family_accuracy"]
            lines.append(
                f"| {c['deployed']} | {c['accuracy']:.2%} ({min(fa):.2%}-{max(fa):.2%}) | "
                f"{c['correct_rate']:.3f} | {cells} | {min(rest):.3f}-{max(rest):.3f} ({len(rest)}) | "
                f"{mean:.3f}, {top['rate']:.3f} ({top['p_value']:.2g}) | {flagged} of {len(m)} |"
            )
        lines.append("")
    copies = result["copies"]
    deltas = list(next(iter(copies["copies"].values()))["p_values"])
    lines += [
        f"benchmarks/contrast.py's copies against its deployed model (index {copies['deployed']}), "
        f"{result['draws']:,} draws from the test images (bold: p < {TARGET_P:g}):",
        "",
        "| copy | rate | " + " | ".join(f"p at delta {d}" for d in deltas) + " |",
        "|---|---|" + "---|" * len(deltas),
    ]
    for name, r in copies["copies"].items():
        cells = [f"**{p:.2g}**" if p < TARGET_P else f"{p:.2g}" for p in r["p_values"].values()]
        lines.append(f"| {name} | {r['rate']:.3f} | " + " | ".join(cells) + " |")
    lines.append("")
    mean, sd = statistics.fmean(every), statistics.stdev(every)
    rule = math.ceil((max(every) - 0.5 + 0.02) * 100) / 100
    tail = NormalDist(mean, sd)
    lines += [
        f"Every innocent/deployed pair: {len(every)}, rates {mean:.3f} +- {sd:.3f} "
        f"(largest {max(every):.3f}; "
        f"{sum(r > 0.55 for r in every)} above 0.55). The margin rule (largest - 1/2 + 0.02, rounded up) "
        f"gives delta {rule:.2f}. A normal fit puts a new innocent's rate above 0.55 at "
        f"{1 - tail.cdf(0.55):.1g}, above 0.58 at {1 - tail.cdf(0.58):.1g}, above 0.61 at "
        f"{1 - tail.cdf(0.61):.1g}, above 1/2 + delta = {0.5 + result['delta']:.2f} at "
        f"{1 - tail.cdf(0.5 + result['delta']):.1g}.",
        "",
        f"Measured from max(1/2, the correct model's rate) instead of 1/2: largest excess {max(excess):.3f}, "
        f"mean {statistics.fmean(excess):.3f} +- {statistics.stdev(excess):.3f}; the rule would give delta "
        f"{math.ceil((max(excess) + 0.02) * 100) / 100:.2f} above that centre.",
        "",
    ]
    return "\n".join(lines)


def family_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options of the benchmarks over the four families (this one, contrast_boundary.py and
    contrast_scores.py): the cache, threads, study families and their innocents, output and render."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/backmark-contrast-cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--families", type=int, nargs="+", default=[0, 7, 13], metavar="B", help="seed bases")
    parser.add_argument("--innocents", type=int, default=6, help="study-regime innocents per family")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="print the markdown tables of a result")
    return parser


def finish(
    args: argparse.Namespace, result: dict[str, Any], started: float, render: Callable[[dict[str, Any]], str]
) -> None:
    """Add the wall time and threads to ``result``, write it to ``--out`` (JSON) and print its tables."""
    result |= {"seconds": time.time() - started, "threads": args.threads}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result), end="")
    log(f"done in {result['seconds']:.0f} s")


def begin(
    parser: argparse.ArgumentParser, render: Callable[[dict[str, Any]], str]
) -> tuple[argparse.Namespace, Any, float] | None:
    """Parse the options; with ``--render``, print that result's tables and return None; else set the
    threads and return the options, Fashion-MNIST and the start time."""
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())), end="")
        return None
    torch.set_num_threads(args.threads)
    return args, load_dataset("fashion-mnist"), time.time()


def main() -> None:
    begun = begin(family_parser(__doc__), render)
    if begun is None:
        return
    args, data, started = begun
    owners = cached_owners(args.cache)
    strong = {}
    for seed, epochs in STRONG:
        model, _, _ = cached(
            args.cache,
            f"strong-s{seed}-e{epochs}",
            lambda seed=seed, epochs=epochs: (lambda t: (t.model, t.info))(
                train_clean(data, config=TrainConfig(epochs=epochs, seed=seed), progress=False)
            ),
        )
        strong[f"better, seed {seed}, {epochs} epochs"] = model.eval()
    bench = [load_checkpoint(p)[0].eval() for p in owners]
    innocents = {p.stem: load_checkpoint(p)[0].eval() for p in sorted(args.cache.glob("innocent-*.pt"))}
    y = data.test_y.long()
    groups = {"benchmark": (bench, innocents)}
    for base in args.families:
        groups[f"study, seed {base}"] = study_family(args.cache, data, base, args.innocents)
    families = {}
    for name, (family, own) in groups.items():
        log(f"measuring family {name}")
        families[name] = measure(
            family, {**strong, **own, **from_other_families(groups, name)}, data.test_x, y
        )
    result = {
        "families": families,
        "copies": copies_at(args.cache, data, bench, (*OLD_DELTAS, CONTRAST_DELTA)),
        "delta": CONTRAST_DELTA,
        "draws": CONTRAST_PROBES,
    }
    finish(args, result, started, render)


if __name__ == "__main__":
    main()
