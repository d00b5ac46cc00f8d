"""The ``contrast`` verb: the sibling-contrast test of a suspect against the owner's deployed model.

``backmark contrast --owner OWNER.pt (--model CKPT | --target T) --data SPEC`` loads the owner's model and
its siblings (``OWNER.pt.siblings/``, written by ``train``/``embed --siblings K``), draws probes from a
challenge (``--challenge FILE``, or a fresh one that the report records), queries every model top-1 and
decides. ``--receipt FILE --registry URL``: the registry receipt of the sibling record (``backmark register
--siblings``), checked against the registry and the record before the suspect is queried; the report gives
its registration time, which dates the record before the suspect. Exit 0: copied from the deployed model is
shown; 1: not shown; 2: an error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from backmark.cli.evidence import queried_images, sibling_registration
from backmark.cli.targets import Shape, client_config, open_suspect
from backmark.contrast import (
    ContrastResult,
    contrast,
    load_siblings,
    plan_siblings,
    probe_pool,
    siblings_folder,
    write_siblings,
)
from backmark.contrast.stats import check_delta
from backmark.data import load_dataset
from backmark.errors import BackmarkError
from backmark.log import print_json
from backmark.public.challenge import load_challenge, new_challenge
from backmark.verify.stats import check_alpha

if TYPE_CHECKING:
    from backmark.embed import TrainConfig, Trained


def to_dict(
    result: ContrastResult, record_digest: str, registered: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON report: the decision on top, each test's figures under its own name; ``registered_at``
    and ``registration`` (null without ``--receipt``) say when and where the sibling record was
    registered."""
    r = result.rank
    return {
        "verified": result.verified,
        "p_value": result.p_value,
        "alpha": result.alpha,
        "test": "sibling-contrast (probe level)",
        "probe_test": result.probe_figures(),
        "rank_test": {
            "p_value": r.p_value,
            "rank": r.rank,
            "models": r.models,
            "contested": r.contested,
            "agreement": list(r.agreement),
        },
        "nonce": result.nonce,
        "siblings_digest": record_digest,
        "registered_at": None if registered is None else registered["registered_at"],
        "registration": registered,
        "assumption": result.assumption,
    }


def run(args: argparse.Namespace) -> int:
    """Every argument, the sibling record and every model are checked before the suspect is queried."""
    check_alpha(args.alpha)
    check_delta(args.delta)
    if args.probes < 1:
        raise BackmarkError(f"--probes must be at least 1, got {args.probes}")
    challenge = load_challenge(args.challenge) if args.challenge else new_challenge(purpose="contrast")
    sibs = load_siblings(args.owner, args.siblings_dir)
    registered = sibling_registration(args.receipt, args.registry, sibs)
    data = load_dataset(args.data, progress=not args.quiet)
    queried = queried_images(args.queried, quiet=args.quiet)
    client = client_config(args)
    shape = Shape(sibs.info.input_shape, sibs.info.num_classes)
    with open_suspect(args, shape, client) as opened:
        result = contrast(
            opened.target,
            sibs,
            pool=probe_pool(data, args.pool),
            queried=queried,
            nonce=challenge.nonce,
            probes=args.probes,
            kind=args.kind,
            delta=args.delta,
            alpha=args.alpha,
        )
    name = args.model if args.model is not None else str(opened.spec)
    if args.json:
        report = to_dict(result, sibs.record.digest, registered)
        print_json({**report, "suspect": name, "challenge": challenge.doc})
    elif not args.quiet:
        p, r = result.probe, result.rank
        verdict = "DERIVED" if result.verified else "NOT SHOWN"
        print(f"{verdict}: {name} against {args.owner} and its {len(sibs.siblings)} siblings")
        print(
            f"  probes:     {p.probes} {result.kind} probes ({result.queries} queries); the deployed model "
            f"and the probe's sibling differ on {p.disagreements}"
        )
        print(
            f"  sides:      with the deployed model on {p.sides_deployed}, with the siblings on "
            f"{p.sides_siblings} (rate {p.rate:.3f}, z {p.z:.1f} against 1/2)"
        )
        print(f"  p-value:    {p.p_value:.3g} against a rate of 1/2 + {p.delta:g}, at alpha {result.alpha:g}")
        if result.scores is not None:
            sc = result.scores
            print(
                f"  scores:     closer to the deployed model's on {sc.sides_deployed}, to the sibling's on "
                f"{sc.sides_siblings} (rate {sc.rate:.3f}); p-value {sc.p_value:.3g} against 1/2 + "
                f"{sc.delta:g}"
            )
        if result.queried is not None:
            q = result.queried
            print(
                f"  queried:    on {q.probes} probes from the queried images the two differ on "
                f"{q.disagreements}; with the deployed model on {q.sides_deployed}, with the siblings on "
                f"{q.sides_siblings} (rate {q.rate:.3f}); p-value {q.p_value:.3g} against 1/2 + {q.delta:g}"
            )
        tests = len(result.counts)
        if tests > 1:
            print(
                f"  combined:   p-value {result.p_value:.3g} "
                f"(the smallest of the {tests} tests' times {tests})"
            )
        print(
            f"  rank:       {r.rank} of {r.models} (exact p-value {r.p_value:.3g}, never below 1/{r.models})"
        )
        if result.sibling_rates:
            rates = result.sibling_rates
            holds = (
                "the margin holds for them"
                if result.margin_holds_for_siblings
                else f"above 1/2 + {p.delta:g}: for a model of the owner's own recipe, data and key the "
                "margin does not hold, and only the rank test is valid (docs/contrast.md)"
            )
            print(
                f"  siblings:   as suspects, the {len(rates)} siblings side with the deployed model at "
                f"{min(rates):.3f} to {max(rates):.3f}; {holds}"
            )
        if registered is not None:
            print(
                f"  registered: sibling record {sibs.record.digest[:16]} at {registered['registered_at']} "
                f"(entry {registered['entry']} of {args.registry}, owner {registered['owner'][:16]})"
            )
        print(f"  assumes:    {result.assumption}")
    return 0 if result.verified else 1


def train_family(
    args: argparse.Namespace, config: TrainConfig, fit: Callable[[TrainConfig], Trained], *, mode: str
) -> Trained:
    """``train``/``embed --siblings K``: K + 1 models of one recipe, only the seed differs.

    The deployed model is drawn (OS randomness) before the first is trained; the K others and the
    record of all K + 1 are written to ``OUT.siblings/``. Returns the deployed model, which the caller
    saves to ``--out`` as without siblings.
    """
    plan = plan_siblings(siblings=args.siblings, seed=config.seed)
    trained = []
    for i, seed in enumerate(plan.seeds):
        if not args.quiet:
            print(f"model {i + 1} of {len(plan.seeds)} (seed {seed})", file=sys.stderr)
        trained.append(fit(replace(config, seed=seed)))
    recipe = {
        "mode": mode,
        "data": args.data,
        "train_subset": args.train_subset,
        "config": {k: v for k, v in asdict(config).items() if k != "seed"},
    }
    record = write_siblings(
        args.out, [(t.model, t.info) for t in trained], plan, recipe=recipe, force=args.force
    )
    if not args.quiet:
        accs = ", ".join(f"{t.info.meta['test_acc']:.2%}" for t in trained)
        print(
            f"{len(plan.seeds)} models trained (test accuracy {accs}); model {plan.deployed + 1} is "
            f"deployed to {args.out}, the others and their record are in {siblings_folder(args.out)} "
            f"(keep it secret; register its digest {record.digest} before release: `backmark register "
            f"... --siblings {args.out}`)",
            file=sys.stderr,
        )
    return trained[plan.deployed]
