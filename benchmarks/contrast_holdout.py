"""Would a probe pool the owner holds out of its training help the contrast test? (docs/contrast.md)

docs/results.md's study leaves two extractions short of the claim's level (into the same architecture at
a rate of 0.584, into preact-ResNet-18 at 0.549). This benchmark retrains the study's FromScratch family
(the deployed model and its 4 siblings: the study's recipe, key and seeds, on the study's threat-model
split) twice: on all of the owner's 40,000 training images (`--holdouts 0`, which reproduces the study's
models), and on 30,000 of them with 10,000 kept out of every model's training (`--holdouts 10000`). It
then runs the study's two extractions (the same attacks and seeds) and gives, over each whole pool (the
test images; with a hold-out also the held-out images, and both), the rate at which each copy sides with
the deployed model against its siblings and the probe test's p-value (default margin) at the expected
decided count of ten draws per pool image. Innocents are measured in the same regime: `--innocents`
models trained with the study's recipe and no key from their own seeds, half on the attacker's data and
half on the owner's training images; and each sibling taken as a suspect against the deployed model and
the other three (a model of the owner's very recipe, data and key: the innocent closest to it).
`--families B ...` repeats everything from seed base B (split, key, models, attacks: `backmark reproduce
--seed B`'s models); the study is seed 0.

    PYTHONPATH=src python benchmarks/contrast_holdout.py --families 0 7 --out docs/contrast-holdout.json
    PYTHONPATH=src python benchmarks/contrast_holdout.py --render docs/contrast-holdout.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from contrast_study_kinds import SIBLINGS, over_pool, p_value  # the study-kinds benchmark's counting

from backmark.contrast import answers
from backmark.data import ImageDataset, load_dataset
from backmark.embed import Trained, train_clean
from backmark.study.owner import owner_models
from backmark.study.reproduce import Settings, attack_suite
from backmark.study.split import threat_model_split
from backmark.training import TrainConfig

HOLDOUTS = (0, 10000)
TARGET_P = 1e-6  # the claim's level
INNOCENTS = 6  # half on the attacker's data, half on the owner's training images (no key)
HOLDOUT_SEED = 12345  # which of the owner's images are held out (fixed, one draw for every family)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def study_config(base: int) -> TrainConfig:
    """The study's training recipe (study.reproduce.Settings) from seed base ``base``."""
    s = Settings()
    return TrainConfig(
        epochs=s.epochs, lr=s.lr, triggers_per_batch=s.triggers_per_batch, augment=s.augment, seed=base
    )


def study_owned(owner: ImageDataset, config: TrainConfig) -> dict[str, Any]:
    """The study's own owner models on ``owner`` (its key, recipe and seeds: the FromScratch model, its
    siblings, and the clean and PreTrained models)."""
    s = Settings()
    return owner_models(
        owner,
        key_size=s.key_size,
        purpose="reproduce",
        config=config,
        pretrained_epochs=s.pretrained_epochs,
        siblings=len(SIBLINGS),
        kind=s.kind,
    )


def family_run(data: ImageDataset, base: int, holdout: int, *, innocents: int) -> dict[str, Any]:
    """Train the FromScratch family without ``holdout`` owner images, extract, and count every pool."""
    s = Settings()
    split = threat_model_split(data, attacker_fraction=s.attacker_fraction, seed=base)
    o = split.owner
    order = torch.randperm(len(o.train_x), generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    keep, held = order[holdout:].sort().values, order[:holdout].sort().values
    owner = ImageDataset(o.name, o.train_x[keep], o.train_y[keep], o.test_x, o.test_y, o.classes)
    config = study_config(base)
    models: dict[str, torch.nn.Module] = {}
    accuracy: dict[str, float] = {}

    def made(name: str, trained: Trained) -> None:
        models[name], accuracy[name] = trained.model.eval(), trained.result.test_acc
        log(f"family {base}, holdout {holdout}: {name} test accuracy {trained.result.test_acc:.2%}")

    # the study's own owner models (the clean and PreTrained models too, which this benchmark does not use)
    owned = study_owned(owner, config)
    for name in ("from-scratch", *SIBLINGS):
        made(name, owned[name].trained)
    # innocents in the study's regime (its recipe, no key): half on the attacker's data, half on the
    # owner's training images, each from its own seed
    for j in range(innocents):
        seed = base + 1000 + j
        data_j, where = (split.attacker, "attacker's data") if j % 2 == 0 else (owner, "owner's data")
        made(f"innocent, {where}, seed {seed}", train_clean(data_j, config=replace(config, seed=seed)))
    for attack in attack_suite(s, data.num_classes):
        if attack.name != "extract":
            continue
        attack = replace(attack, seed=base)
        # an attack seeds its own run (Attack.__call__), so the copy is the study's
        copy = attack(models["from-scratch"], split.attacker_data, monitor=None)
        models[attack.describe()] = copy.eval()
        log(f"family {base}, holdout {holdout}: {attack.describe()} done")
    pools = {"test": data.test_x}
    if holdout:
        pools |= {"held-out": o.train_x[held], "test + held-out": torch.cat([data.test_x, o.train_x[held]])}
    counted: dict[str, Any] = {}
    for pool, images in pools.items():
        said = {n: answers(m, images, num_classes=None) for n, m in models.items()}
        rows = {}
        for name in models:
            if name == "from-scratch":
                continue
            others = [said[sib] for sib in SIBLINGS if sib != name]
            rate, share = over_pool(said["from-scratch"], others, said[name])
            draws = 10 * len(images)
            p = p_value(rate, share, draws)
            rows[name] = {"rate": rate, "decided_share": share, "draws": draws, "p_value": p}
        counted[pool] = {"images": len(images), "models": rows}
    return {
        "family": base,
        "holdout": holdout,
        "owner_images": len(keep),
        "accuracy": accuracy,
        "pools": counted,
    }


def render(result: dict[str, Any]) -> str:
    """Markdown: one row per family, hold-out and pool; innocents' and siblings' rates beside the copies'
    (bold: p < 1e-6 at the default margin)."""

    def cell(r: dict[str, Any]) -> str:
        text = f"{r['rate']:.3f}"
        return f"**{text}**" if r["p_value"] < TARGET_P else text

    lines = [
        "| family | held out | deployed acc | pool | siblings as suspects | innocents (range; flagged) | "
        "extract, same arch | extract, preact-ResNet-18 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        acc = run["accuracy"]["from-scratch"]
        for pool, c in run["pools"].items():
            m = c["models"]
            sibs = ", ".join(cell(m[s]) for s in SIBLINGS)
            inn = [r for n, r in m.items() if n.startswith("innocent")]
            rates = [r["rate"] for r in inn]
            flagged = sum(r["p_value"] < TARGET_P for r in inn)
            innocents = f"{min(rates):.3f}-{max(rates):.3f}; {flagged} of {len(inn)}" if inn else "-"
            copies = [f"{cell(r)} (p {r['p_value']:.2g})" for n, r in m.items() if n.startswith("extract")]
            lines.append(
                f"| {run['family']} | {run['holdout']:,} | {acc:.2%} | {pool} ({c['images']:,}) | {sibs} | "
                f"{innocents} | " + " | ".join(copies) + " |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", type=int, nargs="+", default=[0], metavar="B", help="seed bases")
    parser.add_argument("--holdouts", type=int, nargs="+", default=list(HOLDOUTS), metavar="N")
    parser.add_argument("--innocents", type=int, default=INNOCENTS, help="independent models per family")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="print the markdown table of a result")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs already in --out (seeded: they would repeat)"
    )
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    torch.set_num_threads(args.threads)
    started = time.time()
    data = load_dataset("fashion-mnist")
    kept = json.loads(args.out.read_text()) if args.resume and args.out and args.out.is_file() else {}
    runs = list(kept.get("runs", []))
    done = {(r["family"], r["holdout"]) for r in runs}
    for base in args.families:
        for holdout in args.holdouts:
            if (base, holdout) not in done:
                runs.append(family_run(data, base, holdout, innocents=args.innocents))
    seconds = kept.get("seconds", 0.0) + time.time() - started
    result = {"runs": runs, "seconds": seconds, "threads": args.threads}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    log(f"done in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
