"""``backmark lineage``: do a suspect's weights descend from the owner's? (exit 0 derived, 1 not shown)

Registered by :func:`register` without importing torch; the library is imported when the verb runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from backmark.constants import DEFAULT_ALPHA

if TYPE_CHECKING:
    from backmark.lineage import LineageResult

_FORMS = "ckpt:PATH | torchscript:PATH | onnx:PATH (a plain path: by its contents and extension)"


def register(sub: Any) -> None:
    """Add the ``lineage`` verb to the CLI's subparsers."""
    p = sub.add_parser(
        "lineage",
        help="white-box: test whether a suspect's weights descend from the owner's (exit 0 derived, 1 not "
        "shown, 2 error)",
    )
    p.add_argument("--owner", required=True, metavar="CKPT", help="the owner's model (backmark checkpoint)")
    p.add_argument("--suspect", required=True, metavar="MODEL", help="the suspect's weights: " + _FORMS)
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"significance level (default {DEFAULT_ALPHA:g})"
    )
    p.add_argument(
        "--test",
        choices=("exact", "robust", "either"),
        default="either",
        help="the decision: exact (exact p-value under independent initialisations; blind to permuted "
        "units), robust (sees permuted units; calibrated by measurement only) or either (default: both, "
        "the smaller p-value doubled); docs/lineage.md",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="the robust test's assumed largest share of units an innocent pair's matchings agree on "
        "(default 0.25; docs/lineage.md has the measured shares)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; only the exit status")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func="lineage.lineage")


def lineage(args: argparse.Namespace) -> int:
    from backmark.errors import BackmarkError
    from backmark.lineage import lineage_test, trace_plan
    from backmark.lineage.compare import DEFAULT_MARGIN
    from backmark.lineage.load import load_owner, load_suspect
    from backmark.log import print_json
    from backmark.verify.stats import check_alpha

    check_alpha(args.alpha)
    margin = DEFAULT_MARGIN if args.margin is None else args.margin
    if not 0.0 < margin < 1.0:
        raise BackmarkError(f"--margin must lie strictly between 0 and 1, got {margin}")
    owner, info = load_owner(args.owner)
    plan = trace_plan(owner, input_shape=info.input_shape)
    suspect = load_suspect(args.suspect, plan=plan)
    result = lineage_test(
        owner=owner, suspect=suspect, input_shape=info.input_shape, test=args.test, alpha=args.alpha,
        margin=margin,
    )  # fmt: skip
    if args.json:
        print_json({"owner": args.owner, "suspect": args.suspect, **result.to_dict()})
    elif not args.quiet:
        _print(args, result)
    return 0 if result.verified else 1


def _print(args: argparse.Namespace, result: LineageResult) -> None:
    verdict = "DERIVED" if result.verified else "NOT SHOWN"
    print(
        f"{verdict}: {args.suspect} against {args.owner}: p = {result.p_value:.3g} (log10 "
        f"{result.log10_p_value:.2f}) by the {result.test} test at alpha {result.alpha:g}"
    )
    a = result.assumptions
    print(f"  null:      {a['null']}")
    print(f"  detects:   {a['detects']}")
    print(f"  exact p:   {result.exact_p:.3g} (log10 {result.exact_log10_p:.2f}); {a['exact_p']}")
    print(f"  robust p:  {result.robust_p:.3g} (log10 {result.robust_log10_p:.2f}); {a['robust_p']}")
    print("  layer                units    same index  agree  cosine  log10 exact p  log10 robust p")
    for x in result.layers:
        print(
            f"  {x.name:20} {x.owner_units:>4}/{x.suspect_units:<4} {x.hits:>10}  {x.agreements:>5}  "
            f"{x.cosine:6.3f}  {x.exact_log10_p:13.2f}  {x.robust_log10_p:14.2f}"
        )
    print("  (--json lists which suspect unit each owner unit matched)")
