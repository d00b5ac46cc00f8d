"""``backmark response-key new``, and the response-mark parts of ``serve`` and ``verify``."""

from __future__ import annotations

import argparse
import json

from backmark.errors import BackmarkError
from backmark.response import (
    ResponseLog,
    ResponseMark,
    generate_response_key,
    load_response_key,
    save_response_key,
    verify_response,
)
from backmark.verify.stats import check_alpha


def new_key(args: argparse.Namespace) -> int:
    key = generate_response_key(rate=args.rate)
    path = save_response_key(key, args.out, force=args.force)
    summary = {"key_id": key.key_id, "rate": float(key.rate), "response_key": str(path)}
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(f"response key {key.key_id}: alters {float(key.rate):.2%} of answers")
        print(f"  secret, mode 0600: {path}")
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
    """``backmark verify --response-key RKEY --query-log DB (--model CKPT | --target T)``."""
    from backmark.cli.targets import Shape, client_config, describe_queries, open_suspect

    if args.query_log is None:
        raise BackmarkError("--response-key needs --query-log DB (the log `backmark serve` kept)")
    if args.vk is not None:
        raise BackmarkError("--vk applies with --key, not with --response-key")
    check_alpha(args.alpha)
    client = client_config(args)
    key = load_response_key(args.response_key)
    log = ResponseLog(args.query_log, create=False)
    try:
        info = log.info()
        if info.get("key_id") != key.key_id:
            raise BackmarkError(
                f"query log {args.query_log} was kept for response key {info.get('key_id')}, not {key.key_id}"
            )
        num_classes = int(info["num_classes"])
        input_shape = tuple(json.loads(info["input_shape"]))
        logged = log.read()
    finally:
        log.close()
    c, h, w = input_shape
    with open_suspect(args, Shape((c, h, w), num_classes), client) as opened:
        e = verify_response(
            opened.target, key, logged, num_classes=num_classes, input_shape=(c, h, w), alpha=args.alpha
        )
    name = args.model if args.model is not None else str(opened.spec)
    if args.json:
        queries = opened.queries
        where = "model" if args.model is not None else "target"
        print(
            json.dumps(
                {**e.to_dict(), where: name, "queries": queries.to_dict() if queries else None}, indent=2
            )
        )
    elif not args.quiet:
        print(f"{'VERIFIED' if e.verified else 'NOT VERIFIED'}: {name} against response key {e.key_id}")
        line = describe_queries(opened)
        if line:
            print(line)
        print(
            f"  matches:       {e.matches}/{e.n} logged images answered with the altered label "
            f"({e.matches / e.n:.1%}; null rate at most 1/{num_classes - 1} = {float(e.null_rate):.1%})"
        )
        print(f"  p-value:       {e.p_value:.3g} (log10 {e.log10_p_value:.2f})")
        print(f"  threshold:     {e.threshold} matches at alpha {e.alpha:g}")
        if e.disagreements is not None and e.conditional_p_value is not None:
            print(
                f"  conditional:   {e.matches}/{e.disagreements} where the suspect differs from the served "
                f"answer, p = {e.conditional_p_value:.3g} (reported, not decisive)"
            )
    return 0 if e.verified else 1
