"""``backmark identity``, ``register`` and ``registry serve|lookup|audit``: who marked first. No torch.

Exit status: 0 success (audit: the log is intact), 1 the audit found a bad entry, 2 error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from backmark.atomic import check_file, write_text
from backmark.errors import BackmarkError
from backmark.infra.json_files import read_json
from backmark.log import console, print_json, print_result


def identity_new(args: argparse.Namespace) -> int:
    from backmark.identity import new_identity, save_identity

    identity = new_identity()
    private, public = save_identity(identity, args.out, force=args.force)
    print_result(
        args,
        {"fingerprint": identity.public.fingerprint, "private": str(private), "public": str(public)},
        f"identity {identity.public.fingerprint}",
        f"  {private} (SECRET, mode 0600) and {public} (public, share it)",
    )
    return 0


def identity_show(args: argparse.Namespace) -> int:
    from backmark.identity import load_public_identity

    public = load_public_identity(args.identity)
    if args.json:
        print_json(public.to_json())
    else:
        print(public.fingerprint)
    return 0


def _model_digest(args: argparse.Namespace) -> str | None:
    from backmark.ledger.client import model_digest_of

    if getattr(args, "model", None):
        return model_digest_of(args.model)
    digest: str | None = getattr(args, "model_digest", None)
    return digest


def _siblings_digest(args: argparse.Namespace) -> str | None:
    """The sibling record digest of ``--siblings RECORD`` (read and checked) or ``--siblings-digest``."""
    if getattr(args, "siblings", None):
        from backmark.sibling_record import read_record, record_path

        return read_record(record_path(args.siblings)).digest
    digest: str | None = getattr(args, "siblings_digest", None)
    return digest


def register(args: argparse.Namespace) -> int:
    from backmark.identity import load_identity
    from backmark.ledger.client import RegistryClient, read_vk_digest

    identity = load_identity(args.identity)
    vk_digest = read_vk_digest(args.vk)
    model_digest, siblings_digest = _model_digest(args), _siblings_digest(args)
    out = Path(args.out or f"receipt-{vk_digest[:16]}-{identity.public.short}.json")
    check_file(out, force=args.force)  # before registering: a receipt must never be lost
    on_retry = console(quiet=args.quiet)
    with RegistryClient(
        args.registry, timeout=args.timeout, deadline=args.deadline, on_retry=on_retry
    ) as client:
        receipt = client.register(
            identity, vk_digest=vk_digest, model_digest=model_digest, siblings_digest=siblings_digest
        )
    write_text(out, json.dumps(receipt, indent=1) + "\n", force=args.force)
    also = f" with model {model_digest[:16]}" if model_digest else ""
    also += f"{' and' if also else ' with'} sibling record {siblings_digest}" if siblings_digest else ""
    print_result(
        args,
        {**receipt, "saved": str(out)},
        f"registered verification key {vk_digest[:16]}{also} as entry {receipt['entry']} at "
        f"{receipt['timestamp']} (entry hash {receipt['entry_hash'][:16]}); receipt saved to {out}",
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    from backmark.ledger.server import serve_registry

    if not 0 <= args.port <= 65535:
        raise BackmarkError(f"{{port}} must be between 0 and 65535, got {args.port}", params=["port"])
    log = console(quiet=args.quiet)

    def ready(url: str) -> None:
        print(f"registry serving at {url} (Ctrl-C to stop)", flush=True)

    from backmark.infra.asgi import GuardLimits
    from backmark.ledger.app import RateLimits

    rates = RateLimits.of(reads=args.rate, writes=args.write_rate)
    guard = GuardLimits(
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
    )
    serve_registry(
        args.db,
        args.identity,
        host=args.host,
        port=args.port,
        on_ready=ready,
        log=log,
        rates=rates,
        guard=guard,
    )
    return 0


def lookup(args: argparse.Namespace) -> int:
    from backmark.ledger.client import lookup as look
    from backmark.ledger.client import read_vk_digest

    vk_digest = read_vk_digest(args.vk) if args.vk else args.vk_digest
    found = look(
        args.registry,
        vk_digest=vk_digest,
        model_digest=_model_digest(args),
        siblings_digest=_siblings_digest(args),
        owner=args.owner,
        timeout=args.timeout,
        deadline=args.deadline,
    )
    if args.json:
        print_json(found)
        return 0
    if not found:
        print("no registrations found")
        return 0
    for entry in found:
        model = f" model {entry['model_digest'][:16]}" if entry.get("model_digest") else ""
        model += f" siblings {entry['siblings_digest'][:16]}" if entry.get("siblings_digest") else ""
        print(
            f"entry {entry['entry']:>6}  {entry['timestamp']}  vk {entry['vk_digest'][:16]}{model}  "
            f"owner {entry['owner'][:16]}"
        )
    return 0


def _receipts(paths: list[str]) -> list[dict[str, Any]]:
    return [read_json(path, "receipt") for path in paths]


def audit(args: argparse.Namespace) -> int:
    from backmark.identity import PublicIdentity, load_public_identity
    from backmark.ledger.audit import AuditReport
    from backmark.ledger.audit import audit as run_audit
    from backmark.ledger.chain import Entry

    pinned = load_public_identity(args.server_key) if args.server_key else None
    receipts = _receipts(args.receipt or [])

    def check(server: PublicIdentity) -> None:
        if pinned is not None and pinned != server:
            raise BackmarkError(
                f"the registry's receipts are signed by {server.short}, not by the pinned {{server_key}} "
                f"{pinned.short}",
                params=["server_key"],
            )

    report: AuditReport
    if args.registry:
        from backmark.ledger.client import RegistryClient

        with (
            RegistryClient(args.registry, timeout=args.timeout, deadline=args.deadline) as client,
            client.call(),  # one deadline for the whole audit: identity, head, every page
        ):
            server = client.server_identity()
            check(server)
            head = client.head()
            entries = [Entry.from_json(doc) for doc in client.entries(check=False)]
        report = run_audit(entries, server=server, head=head, receipts=receipts)
    else:
        from backmark.ledger.store import Store

        store = Store(args.db)
        try:
            stored = store.server_identity()
            if stored is None:
                raise BackmarkError(f"{args.db} holds no registry (no server identity recorded)")
            check(stored)
            seq, digest, _ = store.head()
            report = run_audit(store.scan(), server=stored, head=(seq, digest), receipts=receipts)
        finally:
            store.close()
    if args.json:
        print_json(report.to_json())
    else:
        print(report.describe())
    return 0 if report.ok else 1
