"""``backmark response-key new``, and the response-mark parts of ``serve`` and ``verify``."""

from __future__ import annotations

import argparse

from backmark.errors import BackmarkError
from backmark.log import print_json, print_result
from backmark.response import (
    MARKS,
    ResponseLog,
    ResponseMark,
    check_claim,
    generate_response_key,
    load_response_key,
    read_query_log,
    save_response_key,
    verify_claim,
    verify_response,
)
from backmark.verify.decision import piece_level
from backmark.verify.stats import check_eps


def new_key(args: argparse.Namespace) -> int:
    key = generate_response_key(rate=args.rate)
    path = save_response_key(key, args.out, force=args.force)
    summary = {"key_id": key.key_id, "rate": float(key.rate), "response_key": str(path)}
    print_result(
        args,
        summary,
        f"response key {key.key_id}: alters {float(key.rate):.2%} of answers",
        f"  secret, mode 0600: {path}",
    )
    return 0


def response_mark(
    args: argparse.Namespace, *, num_classes: int, input_shape: tuple[int, int, int]
) -> tuple[ResponseMark | None, ResponseLog | None]:
    """``serve``'s ``--response-key`` and ``--query-log``: the mark and its log (None, None without)."""
    if args.response_key is None:
        if args.query_log is not None:
            raise BackmarkError("--query-log applies with --response-key")
        return None, None
    if args.query_log is None:
        raise BackmarkError(
            "--response-key needs --query-log DB: unlogged altered answers cannot be verified"
        )
    key = load_response_key(args.response_key)
    mark = ResponseMark(key, num_classes=num_classes)
    log = ResponseLog(args.query_log, create=True)
    log.bind(key_id=key.key_id, num_classes=num_classes, input_shape=input_shape)
    return mark, log


def verify_response_mark(args: argparse.Namespace) -> int:
    """``backmark verify --response-key RKEY --query-log DB (--model CKPT | --target T)``, and with
    ``--key KEYDIR`` too, one claim from both marks (the trigger mark's labels and label-free tests and the
    response mark, each at alpha/3; verified if any holds: :class:`backmark.response.claim.CombinedClaim`)."""
    from backmark.cli.targets import Shape, client_config, describe_queries, open_suspect

    if args.query_log is None:
        raise BackmarkError("--response-key needs --query-log DB (the log `backmark serve` kept)")
    if args.vk is not None and args.key is None:
        raise BackmarkError("--vk applies with --key")
    piece_level(args.alpha, 1 if args.key is None else MARKS)  # the one check of alpha
    client = client_config(args)
    key = load_response_key(args.response_key)
    contents = read_query_log(args.query_log, key)
    trigger = claim = None
    if args.key is not None:  # the combined claim: the trigger mark first, every commitment checked
        from backmark.keys import load_key_pair

        check_eps(args.eps)
        mk, vk = load_key_pair(args.key, args.vk)
        check_claim(mk, contents, alpha=args.alpha, eps=args.eps)
    with open_suspect(args, Shape(contents.input_shape, contents.num_classes), client) as opened:
        if args.key is not None:
            trigger, claim = verify_claim(
                opened.target, mk, vk, key, contents, alpha=args.alpha, eps=args.eps
            )
            e = claim.response
        else:
            e = verify_response(
                opened.target, key, list(contents.logged), num_classes=contents.num_classes,
                input_shape=contents.input_shape, alpha=args.alpha,
            )  # fmt: skip
    num_classes = contents.num_classes
    name = args.model if args.model is not None else str(opened.spec)
    where = "model" if args.model is not None else "target"
    queries = opened.queries
    if args.json:
        extra = {where: name, "queries": queries.to_dict() if queries else None}
        if claim is None:
            print_json({**e.to_dict(), **extra})
        else:
            assert trigger is not None
            print_json({**claim.to_dict(), "key_id": trigger.key_id, "response_key_id": e.key_id, **extra})
        return 0 if (claim.verified if claim else e.verified) else 1
    if args.quiet:
        return 0 if (claim.verified if claim else e.verified) else 1
    line = describe_queries(opened)
    if claim is not None and trigger is not None:
        pieces = len(claim.decision.pieces)
        print(
            f"{'VERIFIED' if claim.verified else 'NOT VERIFIED'}: {name} against key {trigger.key_id} and "
            f"response key {e.key_id} (each of {pieces} tests at alpha/{pieces} = {claim.level:.3g})"
        )
        if line:
            print(line)
        t = trigger.evidence
        ok = "verified" if claim.trigger_verified else "not verified"
        free = trigger.label_free
        print(
            f"  trigger mark:  {t.matches}/{t.n} triggers answered with the key label, p = {t.p_value:.3g}; "
            f"label-free {free.matches}/{free.n} hits, p = {free.p_value:.3g} (threshold "
            f"{claim.trigger_threshold}): {ok}"
        )
        ok = "verified" if claim.response_verified else "not verified"
        print(
            f"  response mark: {e.matches}/{e.tested} altered labels where the suspect differs from the "
            f"served answer, p = {e.p_value:.3g} (threshold {claim.response_threshold}): {ok}"
        )
        smallest = f"{pieces} x the smallest p-value"
        print(f"  combined:      p = {claim.p_value:.3g} ({smallest}) at alpha {args.alpha:g}")
        return 0 if claim.verified else 1
    print(f"{'VERIFIED' if e.verified else 'NOT VERIFIED'}: {name} against response key {e.key_id}")
    if line:
        print(line)
    print(
        f"  logged:        {e.n} altered images; the suspect's answer differs from the served one on "
        f"{e.tested}"
    )
    print(
        f"  matches:       {e.matches}/{e.tested} of those answered with the altered label "
        f"(null rate 1/{num_classes - 1} = {float(e.null_rate):.1%})"
    )
    print(f"  p-value:       {e.p_value:.3g} (log10 {e.log10_p_value:.2f})")
    print(f"  threshold:     {e.threshold} matches at alpha {e.alpha:g}")
    print(f"  unconditional: {e.matches}/{e.n} over every logged image, p = {e.unconditional_p_value:.3g}")
    return 0 if e.verified else 1
