"""``backmark attack`` and ``backmark reproduce``: parse the options and call :mod:`backmark.robustness`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from backmark.data import dataset_specs
from backmark.errors import BackmarkError
from backmark.log import console
from backmark.verify import DEFAULT_ALPHA


def register(sub: Any) -> None:
    """Add the ``attack`` and ``reproduce`` verbs to the CLI's subparsers."""
    p = sub.add_parser("attack", help="run removal attacks on a marked model and report what survives")
    p.add_argument(
        "--attacks",
        required=True,
        metavar="NAME[,NAME...]",
        help="attacks to run, each NAME[:KEY=VALUE...], values of a sweep separated by '/' "
        "(e.g. ftal:lr=0.01,prune:sparsity=0.5/0.9); 'all': every attack with its defaults; "
        "'list' prints them",
    )
    p.add_argument("--model", metavar="CKPT", help="checkpoint of the marked model")
    p.add_argument("--key", metavar="KEYDIR", help="key folder (marking and verification key)")
    p.add_argument("--data", metavar="SPEC", help="dataset: " + " | ".join(dataset_specs()))
    p.add_argument("--out", metavar="DIR", help="folder for report.json, report.md and the figures")
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level ({DEFAULT_ALPHA:g})"
    )
    p.add_argument(
        "--attacker-fraction",
        type=float,
        default=1 / 3,
        help="share of the training set the attacker holds (default 1/3; the split is seeded by --seed)",
    )
    p.add_argument("--train-subset", type=int, metavar="N", help="use a seeded subset of N training images")
    p.add_argument("--test-subset", type=int, metavar="N", help="measure on a seeded subset of N test images")
    p.add_argument(
        "--force", action="store_true", help="replace a previous report in --out (as a whole, at the end)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the split and the attacks (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    p.add_argument("--json", action="store_true", help="print the report's entries as JSON")
    p.set_defaults(func=attack)

    p = sub.add_parser("reproduce", help="the paper's experiments and the attack suite, into a results file")
    p.add_argument("--data", default="fashion-mnist", metavar="SPEC", help="dataset (default fashion-mnist)")
    p.add_argument("--out", default="backmark-results", metavar="DIR", help="folder for models and reports")
    p.add_argument(
        "--results", metavar="FILE", help="markdown results file (default DIR/results.md), figures beside it"
    )
    p.add_argument("--fast", action="store_true", help="a small smoke run for CI (about two minutes)")
    p.add_argument("--arch", help="architecture (default cnn below 32x32 inputs, else preact-resnet18)")
    p.add_argument("--width", type=int, help="architecture width option")
    p.add_argument("--epochs", type=int, help="owner's training epochs (default 5)")
    p.add_argument("--finetune-epochs", type=int, help="epochs of the fine-tuning attacks (default 20)")
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level ({DEFAULT_ALPHA:g})"
    )
    p.add_argument(
        "--force", action="store_true", help="replace a previous run in --out (as a whole, at the end)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seeds the split, key, training and attacks (default 0)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    p.set_defaults(func=reproduce)


def attack(args: argparse.Namespace) -> int:
    from backmark.attacks import attack_names, create_attack, list_attacks, parse_attacks
    from backmark.robustness import attack_checkpoint

    if args.attacks.strip().lower() == "list":
        for info in list_attacks():
            ordered = sorted(info.defaults.items(), key=lambda kv: kv[0] == "seed")  # seed last
            options = " ".join(f"{k}={v}" for k, v in ordered)
            print(f"{info.name:15} [{info.access}] {info.summary}\n{'':15} options: {options}")
        return 0
    if args.attacks.strip().lower() == "all":
        attacks = [create_attack(name) for name in attack_names()]
    else:
        attacks = parse_attacks(args.attacks)
    missing = [f"--{name}" for name in ("model", "key", "data", "out") if getattr(args, name) is None]
    if missing:
        raise BackmarkError(f"attack needs {', '.join(missing)} (only '--attacks list' runs without them)")
    report = attack_checkpoint(
        args.model,
        args.key,
        args.data,
        attacks,
        args.out,
        alpha=args.alpha,
        attacker_fraction=args.attacker_fraction,
        seed=args.seed,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        force=args.force,
        log=console(quiet=args.quiet),
    )
    if args.json:
        import json

        print(json.dumps([o.to_dict() for o in report.outcomes], indent=1, default=str))
    elif not args.quiet:
        removed = [o.label for o in report.outcomes if o.removed]
        print(f"{len(report.outcomes)} attack(s); removed the watermark: {', '.join(removed) or 'none'}")
        print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def reproduce(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from backmark.robustness import Settings
    from backmark.robustness import reproduce as run

    settings = Settings.fast() if args.fast else Settings()
    changes = {
        "arch": args.arch,
        "width": args.width,
        "epochs": args.epochs,
        "finetune_epochs": args.finetune_epochs,
    }
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    results = Path(args.results) if args.results else None
    summary = run(
        Path(args.out),
        data_spec=args.data,
        settings=settings,
        seed=args.seed,
        alpha=args.alpha,
        results=results,
        command="backmark " + shlex.join(sys.argv[1:] if sys.argv[1:2] == ["reproduce"] else ["reproduce"]),
        force=args.force,
        log=console(quiet=args.quiet),
    )
    where = results or Path(args.out) / "results.md"
    print(f"reproduce finished in {summary.seconds:.0f} s; results: {where}")
    return 0
