"""``backmark attack`` and ``backmark reproduce``: parse the options and call :mod:`backmark.study`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from backmark.errors import BackmarkError
from backmark.log import console


def attack(args: argparse.Namespace) -> int:
    from backmark.attacks import attack_names, create_attack, list_attacks, parse_attacks
    from backmark.study import attack_checkpoint

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
        device=args.device,
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

    from backmark.study import Settings
    from backmark.study import reproduce as run

    settings = Settings.fast() if args.fast else Settings()
    changes = {
        "arch": args.arch,
        "width": args.width,
        "epochs": args.epochs,
        "finetune_epochs": args.finetune_epochs,
        "search": args.search,
        "kind": args.kind,
    }
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    if args.response_rate is not None:
        if not 0 <= args.response_rate < 0.5:
            raise BackmarkError(f"--response-rate must lie in [0, 0.5), got {args.response_rate:g}")
        settings = replace(settings, response_rate=args.response_rate or None)
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
        device=args.device,
        workers=args.workers,
    )
    where = results or Path(args.out) / "results.md"
    print(f"reproduce finished in {summary.seconds:.0f} s; results: {where}")
    return 0
