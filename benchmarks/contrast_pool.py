"""Where the contrast test's power comes from: the pool of natural images and the number of draws.

Reuses the models benchmarks/contrast.py trained and cached (the owner's k + 1 models, 20 innocents, 11
stolen copies) and asks, for natural probes: drawn from the test images alone (10,000), from every image
the owner holds (its 40,000 training images and the 10,000 test images), or from the test images and
their one-pixel shifts (the `shifted` kind: 50,000 inputs), 20,000 to 100,000 draws with replacement. An
input drawn twice is asked once, so the suspect's queries are the distinct inputs. For each setting the
innocents' and siblings' rates are computed first and the margin the
benchmark's rule would choose from them (the largest rate - 1/2 + 0.02, rounded up) is recorded; the
suspects are decided at the default margin (backmark.constants.CONTRAST_DELTA) and at that rule's.

    PYTHONPATH=src python benchmarks/contrast.py --out docs/contrast.json      # trains the cache first
    PYTHONPATH=src python benchmarks/contrast_pool.py --out docs/contrast-pool.json
    PYTHONPATH=src python benchmarks/contrast_pool.py --render docs/contrast-pool.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from contrast import (  # benchmarks/contrast.py, whose models this reuses
    SEED,
    TARGET_P,
    benchmark_plan,
    cached_owners,
    probes_needed,
    suspect_slug,
)

from backmark.constants import CONTRAST_DELTA
from backmark.contrast import (
    answers,
    binomial_tail,
    draw,
    probe_pool,
    probe_test,
    sibling_tests,
)
from backmark.contrast.probes import SHIFTS, shifted
from backmark.data import load_dataset
from backmark.models import load_checkpoint
from backmark.study.split import threat_model_split

DRAWS = (20000, 50000, 100000)
NONCE = hashlib.sha256(b"contrast-study/probes/natural").digest()  # benchmarks/contrast.py's natural nonce
POOLS = ("test", "owner", "shifted")  # test images; training + test images; test images and their shifts
SUSPECTS = (  # benchmarks/contrast.py's suspects, in its order (their cache names are hashes of these)
    "extract 20k (same arch)",
    "extract 5k (same arch)",
    "extract 20k (preact-resnet18 w8)",
    "distill T=4",
    "extract, label smoothing 0.2, 2 epochs",
    "extract, labels voted over 5 shifts",
    "extract with mixup 0.2",
    "extract, agreement-filtered (1,000 hand labels)",
    "extract, then fine-tuned on 1,000 hand labels",
    "ft-large-lr lr 0.1",
    "ft-large-lr lr 0.3",
)


def render(result: dict[str, Any]) -> str:
    """The markdown tables of docs/contrast.md from a result file."""
    default = result["config"]["default_delta"]
    lines = [
        f"| pool | draws | queries | decided | innocent rates (mean, sd, max) | rule's delta | "
        f"shown at delta {default:g} (p < {TARGET_P:g}) | innocents flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in result["settings"]:
        shown = sum(r["p_value"] <= TARGET_P for r in s["suspects"].values())
        flagged = sum(r["p_value"] <= TARGET_P for r in s["innocents"].values())
        lines.append(
            f"| {s['pool']} ({s['pool_size']:,}) | {s['draws']:,} | {s['queries']:,} | {s['decided']:,} "
            f"| {s['innocent_mean']:.3f}, {s['innocent_sd']:.3f}, {s['innocent_max']:.3f} "
            f"| {s['rule_delta']:.2f} | {shown} of {len(s['suspects'])} "
            f"| {flagged} of {len(s['innocents'])} |"
        )
    lines += [
        "",
        f"p-values at delta {default:g} (in brackets: at the rule's delta for that setting):",
        "",
        "| suspect | " + " | ".join(f"{s['pool']} {s['draws'] // 1000}k" for s in result["settings"]) + " |",
        "|---|" + "---|" * len(result["settings"]),
    ]
    for name in SUSPECTS:
        cells = []
        for s in result["settings"]:
            r = s["suspects"][name]
            p = f"**{r['p_value']:.1g}**" if r["p_value"] <= TARGET_P else f"{r['p_value']:.2g}"
            cells.append(f"{r['rate']:.3f}: {p} ({r['p_value_rule']:.1g})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    best = max((s for s in result["settings"] if s["pool"] == "test"), key=lambda s: s["draws"])
    lines += [
        "",
        f"Draws for p < {TARGET_P:g} at delta {default:g} if a suspect keeps the rate measured at "
        f"{best['draws']:,} draws from the test images, and the queries they cost (the expected distinct "
        f"images among them, pool x (1 - exp(-draws / pool))):",
        "",
        "| suspect | draws | queries |",
        "|---|---|---|",
    ]
    for name in SUSPECTS:
        need = best["suspects"][name]["draws_for_p_1e-6"]
        size = best["pool_size"]
        cost = "never" if need is None else f"{need:,} | {round(size * (1 - math.exp(-need / size))):,}"
        lines.append(f"| {name} | {cost} |" if need is not None else f"| {name} | never | never |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/backmark-contrast-cache"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/contrast-pool.json"))
    parser.add_argument("--render", type=Path, metavar="JSON", help="print the markdown tables of a result")
    parser.add_argument("--pools", nargs="+", choices=POOLS, default=list(POOLS), help="settings to measure")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())), end="")
        return
    owners = cached_owners(args.cache)
    torch.set_num_threads(args.threads)
    started = time.time()
    data = load_dataset("fashion-mnist")
    split = threat_model_split(data, seed=SEED)
    plan = benchmark_plan(len(owners) - 1)
    family = [load_checkpoint(p)[0].eval() for p in owners]
    deployed = family[plan.deployed]
    siblings = [m for i, m in enumerate(family) if i != plan.deployed]
    innocents = {p.stem: load_checkpoint(p)[0].eval() for p in sorted(args.cache.glob("innocent-*.pt"))}
    suspects = {}
    for name in SUSPECTS:
        path = args.cache / f"{suspect_slug(name)}.pt"
        suspects[name] = load_checkpoint(path)[0].eval()

    settings = []
    for pool_name in args.pools:
        pool = probe_pool(split.owner, "all") if pool_name == "owner" else data.test_x
        kind = "shifted" if pool_name == "shifted" else "natural"
        inputs = shifted(pool, torch.arange(len(pool) * len(SHIFTS))) if kind == "shifted" else pool
        # every model answers every input once; each setting's draws index into those answers (a
        # verifier asks only the distinct inputs drawn: `queries` below)
        pool_answers = {
            id(m): answers(m, inputs, num_classes=None)
            for m in (*family, *innocents.values(), *suspects.values())
        }
        for count in DRAWS:
            drawn = draw(pool, kind=kind, count=count, nonce=NONCE)
            assert drawn.source is not None  # natural and shifted probes: indices of the inputs
            picks = drawn.source[drawn.index]

            def ask(
                model: torch.nn.Module, picks: torch.Tensor = picks, known: Any = pool_answers
            ) -> torch.Tensor:
                return known[id(model)][picks]

            a = ask(deployed)
            others = torch.stack([ask(m) for m in siblings])
            rates = {}
            calibration = {}
            for name, m in innocents.items():
                calibration[name] = probe_test(a, others, ask(m), delta=CONTRAST_DELTA)
            for i, e in enumerate(sibling_tests(a, others, delta=CONTRAST_DELTA)):
                calibration[f"sibling {i}"] = e
            rates = [e.rate for e in calibration.values()]
            rule = min(0.49, max(0.0, math.ceil((max(rates) - 0.5 + 0.02) * 100) / 100))  # before suspects
            rows = {}
            for name, m in suspects.items():
                e = probe_test(a, others, ask(m), delta=CONTRAST_DELTA)
                decided = e.sides_deployed + e.sides_siblings
                rows[name] = {
                    "rate": e.rate,
                    "decided": decided,
                    "p_value": e.p_value,
                    "p_value_rule": binomial_tail(e.sides_deployed, decided, 0.5 + rule) if decided else 1.0,
                    "draws_for_p_1e-6": probes_needed(e.rate, decided / count, CONTRAST_DELTA, count),
                }
            setting = {
                "pool": pool_name,
                "pool_size": len(inputs),
                "draws": count,
                "queries": len(drawn.images),
                "decided": int((a != others[torch.arange(count) % len(siblings), torch.arange(count)]).sum()),
                "innocent_mean": statistics.fmean(rates),
                "innocent_sd": statistics.stdev(rates),
                "innocent_max": max(rates),
                "rule_delta": rule,
                "innocents": {
                    n: {"rate": e.rate, "decided": e.sides_deployed + e.sides_siblings, "p_value": e.p_value}
                    for n, e in calibration.items()
                },
                "suspects": rows,
            }
            settings.append(setting)
            print(
                f"[{time.strftime('%H:%M:%S')}] {pool_name} {count}: {setting['queries']} queries, "
                f"innocents up to {max(rates):.3f}",
                flush=True,
            )
    result = {
        "command": f"PYTHONPATH=src python benchmarks/contrast_pool.py --threads {args.threads}",
        "config": {
            "seed": SEED,
            "default_delta": CONTRAST_DELTA,
            "siblings": len(siblings),
            "deployed": plan.deployed,
            "owner_train": len(split.owner.train_x),
            "test": len(data.test_x),
            "models": "benchmarks/contrast.py's cache (docs/contrast.json): cnn, 3 epochs",
        },
        "settings": settings,
        "wall_seconds": round(time.time() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
