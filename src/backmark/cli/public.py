"""The verbs of public verification and tracing: ``challenge``, ``prove``, ``check`` and ``trace``.

Exit status: ``check`` 0 verified, 1 not verified, 2 error (a rejected proof included); ``trace`` 0 when
exactly one key verifies (the licensee is named), 1 when none or several do, 2 error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backmark.cli.targets import client_config, describe_queries, open_suspect
from backmark.constants import DEFAULT_VERIFY_TEST
from backmark.errors import BackmarkError
from backmark.keys import MK_NAME, load_key_pair, load_verification_key
from backmark.log import print_json, print_result
from backmark.public import (
    CheckResult,
    check_proof,
    load_challenge,
    load_proof,
    new_challenge,
    prove_to_file,
    save_challenge,
)
from backmark.verify.stats import check_alpha
from backmark.verify.trace import trace as trace_keys


def challenge(args: argparse.Namespace) -> int:
    made = new_challenge(size=args.size)
    path = save_challenge(made, args.out, force=args.force)
    size = f"{made.size} items" if made.size is not None else "a size of the prover's choice"
    print_result(
        args,
        {"challenge": str(path), "digest": made.digest, **made.doc},
        f"{path}: challenge {made.digest[:16]} for {size}; send it to the owner, keep it for `check`",
    )
    return 0


def prove_cmd(args: argparse.Namespace) -> int:
    signer = None
    if args.identity is not None:
        from backmark.identity import load_identity

        signer = load_identity(args.identity)  # before anything is spent
    made = prove_to_file(
        args.key, args.challenge, args.out, size=args.size, identity=signer, force=args.force
    )
    proof, path = made.proof, Path(args.out)
    summary = {
        "proof": str(path),
        "key_id": proof.doc["key_id"],
        "challenge_digest": proof.doc["challenge_digest"],
        "size": proof.size,
        "slot": proof.slot,
        "indices": list(proof.indices),
        "reissued": made.reissued,
        "signed_by": proof.signer,
        "spent": made.spent,
        "verifications_left": made.slots_left,
    }
    again = " (the same items as before for this challenge)" if made.reissued else ""
    print_result(
        args,
        summary,
        f"{path}: opens {proof.size} items (slot {proof.slot} of {made.slots}) of key "
        f"{proof.doc['key_id']}{again}",
        f"  the key has {made.slots_left} verifications of {proof.size} items left "
        f"({made.spent} items spent)",
    )
    return 0


def check(args: argparse.Namespace) -> int:
    """Every file is checked, and the proof against them, before the suspect is queried."""
    check_alpha(args.alpha)
    client = client_config(args)
    vk = load_verification_key(args.vk)
    asked = load_challenge(args.challenge)
    proof = load_proof(args.proof)
    previous = [load_proof(p) for p in args.previous or ()]
    with open_suspect(args, vk, client) as opened:
        result = check_proof(
            opened.target,
            vk,
            asked,
            proof,
            alpha=args.alpha,
            keys_held=args.keys_held,
            accept_unverifiable=args.accept_unverifiable,
            previous=previous,
            test=args.test or DEFAULT_VERIFY_TEST,
        )
    name = args.model if args.model is not None else str(opened.spec)
    if args.json:
        log = opened.queries
        print_json(
            {
                **result.to_dict(),
                "model" if args.model is not None else "target": name,
                "vk_digest": vk.digest,
                "queries": log.to_dict() if log else None,
            }
        )
    elif not args.quiet:
        e = result.evidence
        print(f"{'VERIFIED' if result.verified else 'NOT VERIFIED'}: {name} against key {vk.key_id}")
        print(f"  proof:         {e.n} items opened for this challenge; every commitment opens")
        verifiable = "yes, regenerated from their seeds" if result.triggers_verifiable else "NO"
        print(f"  verifiable:    {verifiable}")
        queries = describe_queries(opened)
        if queries:
            print(queries)
        factor = result.slot_choices * result.keys_held * len(result.decision.pieces)
        print(
            f"  claim:         {result.test} at alpha {args.alpha:g}, corrected for {result.slot_choices} "
            f"slot choices x {result.keys_held} key(s) x {len(result.decision.pieces)} test(s): each test "
            f"at {e.alpha:.3g}; corrected p-value {result.p_value_corrected:.3g} ({factor} x the smaller)"
        )
        print(
            f"  labels:        {e.matches}/{e.n} matches (chance is {1 / e.null_classes:.1%}), p-value "
            f"{e.p_value:.3g}, threshold {e.threshold}{_role(result, 'labels')}"
        )
        if result.label_free is not None:
            free = result.label_free
            print(
                f"  label-free:    {free.matches}/{free.n} hits, p-value {free.p_value:.3g}, threshold "
                f"{free.threshold}{_role(result, 'label-free')}"
            )
        print(f"  reason:        {result.reason}")
    return 0 if result.verified else 1


def _role(result: CheckResult, name: str) -> str:
    if name not in (p.name for p in result.decision.pieces):
        return " (reported, not decisive)"
    passed = name in result.decision.passed
    return ": passes" if passed else ": fails"


def _key_name(key: str) -> str:
    path = Path(key)
    return path.parent.name if path.name == MK_NAME or path.is_file() else path.name


def trace(args: argparse.Namespace) -> int:
    check_alpha(args.alpha)
    client = client_config(args)
    names = args.names.split(",") if args.names else [_key_name(k) for k in args.keys]
    if len(names) != len(args.keys):
        raise BackmarkError(f"--names gives {len(names)} names for {len(args.keys)} keys")
    keys = [(name, *load_key_pair(k)) for name, k in zip(names, args.keys, strict=True)]
    with open_suspect(args, keys[0][1], client) as opened:
        result = trace_keys(opened.target, keys, alpha=args.alpha, test=args.test or DEFAULT_VERIFY_TEST)
    if args.json:
        print_json(result.to_dict())
    elif not args.quiet:
        if result.named is not None:
            print(f"LICENSEE: {result.named} (the only key of {len(keys)} that verifies)")
        elif result.verified:
            print(f"SEVERAL KEYS VERIFY: {', '.join(o.name for o in result.verified)}")
        else:
            print(f"NO KEY VERIFIES (of {len(keys)})")
        tests = len(result.outcomes[0].decision.pieces)
        print(
            f"  each key tested at alpha {args.alpha:g} / {len(keys)} keys / {tests} test(s) "
            f"({result.outcomes[0].test}); {result.queries} images queried"
        )
        for o in result.outcomes:
            mark = "*" if o.verified else " "
            print(
                f" {mark} {o.name:20} {o.evidence.matches:4}/{o.evidence.n} matches "
                f"(threshold {o.evidence.threshold}), p = {o.p_value:.3g}, "
                f"corrected {o.p_value_corrected:.3g}"
                + ("" if o.label_free is None else f"; label-free {o.label_free.matches} hits")
                + (f" (by {', '.join(o.decision.passed)})" if o.verified else "")
            )
    return 0 if result.named is not None else 1


def claim(args: argparse.Namespace) -> int:
    from backmark.public.dispute import make_claim, save_claim

    doc = make_claim(args.vk, args.challenge, args.proof, args.receipt)
    path = save_claim(doc, args.out, force=args.force)
    if not args.quiet:
        print(
            f"{path}: a claim on key {doc['proof']['key_id']} (registry entry {doc['receipt'].get('entry')})"
        )
    return 0


def dispute(args: argparse.Namespace) -> int:
    from backmark.public.dispute import dispute as settle
    from backmark.public.dispute import load_claim, parse_published

    check_alpha(args.alpha)
    published = None if args.published is None else parse_published(args.published)
    claims = [load_claim(path) for path in args.claims]
    client = client_config(args)
    with open_suspect(args, claims[0].vk, client) as opened:
        result = settle(
            opened.target,
            claims,
            registry_url=args.registry,
            published=published,
            alpha=args.alpha,
            deadline=args.deadline,
            test=args.test or DEFAULT_VERIFY_TEST,
        )
    if args.json:
        print_json(result.to_dict())
    elif not args.quiet:
        first = result.first
        if first is None:
            print("NO CLAIM HOLDS: none verifies with a valid, first registration")
        else:
            print(
                f"FIRST: {first.name} (key {first.key_id}, registry entry {first.entry}, {first.registered})"
            )
        for o in result.outcomes:
            check = (
                "no check" if o.check is None else f"{o.check.evidence.matches}/{o.check.evidence.n} matches"
            )
            status = "valid" if o.valid else ("verified" if o.verified else "not verified")
            late = ", registered after publication" if o.after_publication else ""
            print(f"  {o.name}: {status}; entry {o.entry} at {o.registered}; {check}{late}")
            for problem in o.problems:
                print(f"    - {problem}")
    return 0 if result.first is not None else 1
