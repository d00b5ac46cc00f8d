"""Tamper tests: rows edited, deleted or swapped in the database itself; the audit names the first bad one."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from backmark.cli.main import main
from backmark.identity import Identity, new_identity, save_identity
from backmark.ledger.audit import AuditReport, audit
from backmark.ledger.chain import check_submission, entry_hash, make_submission
from backmark.ledger.store import Store

N = 6


@pytest.fixture
def store(db_url: str, server_id: Identity) -> Store:
    store = Store(db_url)
    store.init(server_id.public)
    for i in range(N):
        doc = make_submission(
            new_identity(), registry=server_id.public.fingerprint, vk_digest=f"{i + 1:064x}"
        )
        store.append(check_submission(doc), server=server_id, now=lambda: datetime.now(UTC))
    yield store
    store.close()


def run(store: Store, server: Identity, receipts: list[dict[str, Any]] | None = None) -> AuditReport:
    seq, digest, _ = store.head()
    return audit(store.scan(), server=server.public, head=(seq, digest), receipts=receipts or [])


def sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_an_untouched_log_is_clean(store: Store, server_id: Identity) -> None:
    report = run(store, server_id)
    assert report.ok and report.entries == N and report.head == N and report.first_bad is None
    assert "OK, 6 entries" in report.describe()


def swap(store: Store, a: int, b: int) -> None:
    """Exchange the places of entries ``a`` and ``b`` (their numbers), as a reordering would."""
    sql(store, "UPDATE registry_entries SET seq = -1 WHERE seq = :a", a=a)
    sql(store, "UPDATE registry_entries SET seq = :a WHERE seq = :b", a=a, b=b)
    sql(store, "UPDATE registry_entries SET seq = :b WHERE seq = -1", b=b)


TAMPERS: dict[str, tuple[Callable[[Store], None], int, str]] = {
    "edited vk_digest": (
        lambda s: sql(s, "UPDATE registry_entries SET vk_digest = :v WHERE seq = 3", v="f" * 64),
        3,
        "differs from what the owner signed",
    ),
    "edited timestamp": (
        lambda s: sql(
            s, "UPDATE registry_entries SET timestamp = '2001-01-01T00:00:00.000000Z' WHERE seq = 4"
        ),
        4,
        "timestamp",
    ),
    "edited submission": (
        lambda s: sql(
            s,
            "UPDATE registry_entries SET submission = replace(submission, :a, :b) WHERE seq = 2",
            a='"nonce":"',
            b='"nonce":"0',
        ),
        2,
        "submission is invalid",
    ),
    "unreadable submission": (
        lambda s: sql(s, "UPDATE registry_entries SET submission = '{' WHERE seq = 5"),
        5,
        "not valid JSON",
    ),
    "deleted row": (lambda s: sql(s, "DELETE FROM registry_entries WHERE seq = 3"), 3, "entry 3 is missing"),
    "deleted last row": (
        lambda s: sql(s, "DELETE FROM registry_entries WHERE seq = 6"),
        6,
        "head records entry 6",
    ),
    "swapped rows": (
        lambda s: swap(s, 2, 4),
        2,
        "prev_hash",
    ),
    "forged server signature": (
        lambda s: sql(
            s,
            "UPDATE registry_entries SET server_signature = :v WHERE seq = 5",
            v=base64.b64encode(b"\1" * 64).decode(),
        ),
        5,
        "server's signature does not match",
    ),
    "head moved on": (
        lambda s: sql(s, "UPDATE registry_head SET seq = 7"),
        7,
        "head records entry 7",
    ),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampering_is_found_at_the_first_bad_entry(store: Store, server_id: Identity, tamper: str) -> None:
    change, first_bad, reason = TAMPERS[tamper]
    change(store)
    report = run(store, server_id)
    assert not report.ok
    assert report.first_bad == first_bad, report.reason
    assert reason in str(report.reason)
    assert report.entries == first_bad - 1 or tamper in ("deleted last row", "head moved on")


def test_a_rewritten_chain_still_fails_on_the_server_signatures(store: Store, server_id: Identity) -> None:
    # A forger edits entry 4's time and recomputes every hash after it: the chain is consistent again,
    # but the server's receipt signatures cannot be recomputed without the server's private key.
    sql(store, "UPDATE registry_entries SET timestamp = timestamp WHERE seq = 4")
    rows = list(store.scan())
    prev = rows[2].entry_hash
    for row in rows[3:]:
        stamp = row.timestamp.replace(row.timestamp[:4], "2099") if row.seq == 4 else row.timestamp
        digest = entry_hash(seq=row.seq, timestamp=stamp, submission_hash=row.submission_hash, prev_hash=prev)
        sql(
            store,
            "UPDATE registry_entries SET timestamp = :t, prev_hash = :p, entry_hash = :h WHERE seq = :s",
            t=stamp,
            p=prev,
            h=digest,
            s=row.seq,
        )
        prev = digest
    sql(store, "UPDATE registry_head SET entry_hash = :h", h=prev)
    report = run(store, server_id)
    assert (report.ok, report.first_bad) == (False, 4)
    assert "server's signature" in str(report.reason) or "before the previous" in str(report.reason)


def test_a_truncated_log_with_its_head_rolled_back_is_caught_by_a_receipt(
    store: Store, server_id: Identity
) -> None:
    rows = list(store.scan())
    receipt, prev = rows[N - 1].receipt(server_id.public), rows[N - 2]
    sql(store, "DELETE FROM registry_entries WHERE seq = :s", s=N)
    sql(store, "UPDATE registry_head SET seq = :s, entry_hash = :h", s=N - 1, h=prev.entry_hash)
    assert run(store, server_id).ok  # consistent again ...
    report = run(store, server_id, receipts=[receipt])  # ... but not with the owner's receipt
    assert (report.ok, report.first_bad) == (False, N) and "no longer holds it" in str(report.reason)


def test_cli_audit_exit_status_and_json(
    store: Store, server_id: Identity, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "audit", "--db", db_url]) == 0
    assert "registry audit: OK, 6 entries" in capsys.readouterr().out
    save_identity(server_id, tmp_path / "srv")
    assert main(["registry", "audit", "--db", db_url, "--server-key", str(tmp_path / "srv")]) == 0
    save_identity(new_identity(), tmp_path / "other")
    capsys.readouterr()
    assert main(["registry", "audit", "--db", db_url, "--server-key", str(tmp_path / "other")]) == 2
    assert "not by the pinned --server-key" in capsys.readouterr().err
    sql(store, "DELETE FROM registry_entries WHERE seq = 2")
    assert main(["registry", "audit", "--db", db_url, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["first_bad"] == 2 and "entry 2 is missing" in report["reason"]
    assert main(["registry", "audit", "--db", db_url]) == 1
    assert "FAILED at entry 2: entry 2 is missing (entries jump from 1 to 3)" in capsys.readouterr().out
