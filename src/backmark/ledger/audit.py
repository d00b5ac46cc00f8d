"""Re-check a registry end to end: the hash chain, every owner's and the server's signature, the head.

The same audit runs on the database (``backmark registry audit --db URL``) and on what a registry serves
over HTTP (``--registry URL``: every entry is fetched and re-checked here, trusting nothing the server
says about itself). It stops at the first bad entry and names it:

- a deleted row: the numbers jump (``entry 7 is missing``), or the chain ends before the head;
- an edited row: a hash no longer matches, a column differs from the signed submission, or a signature
  fails;
- reordered or swapped rows: an entry's ``prev_hash`` is not the hash of the entry before it.

A log whose last entries were deleted *and* whose head was rolled back to match is consistent again;
only a receipt held outside shows the loss, so :func:`audit` also checks any ``receipts`` given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from backmark.errors import BackmarkError
from backmark.identity import PublicIdentity, check_document_signature, is_hex_digest
from backmark.ledger.chain import (
    GENESIS,
    RECEIPT_PURPOSE,
    Entry,
    check_receipt,
    check_submission,
    entry_hash,
    parse_time,
)


@dataclass(frozen=True)
class AuditReport:
    """What an audit found: ``ok``, or the first bad entry's number and why."""

    entries: int  # entries checked and found good
    head: int  # the last entry's number according to the head
    head_hash: str
    server: str  # the fingerprint of the identity whose receipt signatures were checked
    ok: bool
    first_bad: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.ok:
            return (
                f"registry audit: OK, {self.entries} entries, hash chain and every signature valid; head "
                f"entry {self.head} {self.head_hash[:16]}, receipts signed by {self.server[:16]}"
            )
        return f"registry audit: FAILED at entry {self.first_bad}: {self.reason}"


def _check_entry(
    entry: Entry, *, expected: int, prev_hash: str, prev_time: str, server: PublicIdentity
) -> None:
    """Raise BackmarkError (without the entry number) for the first thing wrong with ``entry``."""
    if entry.seq != expected:
        gap = f"entries jump from {expected - 1} to {entry.seq}" if entry.seq > expected else "out of order"
        raise BackmarkError(f"entry {expected} is missing ({gap})")
    if entry.prev_hash != prev_hash:
        raise BackmarkError(
            "its prev_hash is not the hash of the entry before it (an entry was edited, removed or moved)"
        )
    try:
        submission = check_submission(entry.submission)
    except BackmarkError as exc:
        raise BackmarkError(f"its submission is invalid: {exc}") from None
    if submission.hash != entry.submission_hash:
        raise BackmarkError("its submission does not match its submission_hash (the submission was edited)")
    if (entry.vk_digest, entry.model_digest, entry.siblings_digest, entry.owner) != (
        submission.vk_digest,
        submission.model_digest,
        submission.siblings_digest,
        submission.owner.fingerprint,
    ):
        raise BackmarkError(
            "its vk_digest, model_digest, siblings_digest or owner differs from what the owner signed"
        )
    if submission.doc["registry"] != server.fingerprint:
        raise BackmarkError("its submission is addressed to another registry")
    try:
        parse_time(entry.timestamp)
    except ValueError as exc:
        raise BackmarkError(f"its timestamp is malformed: {exc}") from None
    if entry.timestamp < prev_time:
        raise BackmarkError(f"its timestamp {entry.timestamp} is before the previous entry's {prev_time}")
    recomputed = entry_hash(
        seq=entry.seq,
        timestamp=entry.timestamp,
        submission_hash=entry.submission_hash,
        prev_hash=entry.prev_hash,
    )
    if not is_hex_digest(entry.entry_hash) or recomputed != entry.entry_hash:
        raise BackmarkError("its entry_hash does not match its content (the entry was edited)")
    try:
        check_document_signature(entry.receipt(server), RECEIPT_PURPOSE, signer=server, what="its receipt")
    except BackmarkError as exc:
        raise BackmarkError(f"the server's signature does not match: {exc}") from None


def audit(
    rows: Iterable[Entry | BackmarkError],
    *,
    server: PublicIdentity,
    head: tuple[int, str],
    receipts: Iterable[dict[str, Any]] = (),
) -> AuditReport:
    """Check ``rows`` (in order of their numbers) against the ``server`` key and the ``(seq, hash)`` head.

    A row that could not even be read is given as a BackmarkError. ``receipts``: receipts held outside
    the registry, each of which must match the entry of its number.
    """
    count, prev_hash, prev_time = 0, GENESIS, ""
    checked: dict[int, str] = {}
    wanted = {}
    for receipt in receipts:
        check_receipt(receipt, server)
        wanted[int(receipt["entry"])] = str(receipt["entry_hash"])

    def failed(seq: int, reason: str) -> AuditReport:
        return AuditReport(count, head[0], head[1], server.fingerprint, False, seq, reason)

    for row in rows:
        expected = count + 1
        if isinstance(row, BackmarkError):
            return failed(expected, str(row))
        try:
            _check_entry(row, expected=expected, prev_hash=prev_hash, prev_time=prev_time, server=server)
        except BackmarkError as exc:
            return failed(expected, str(exc))
        if row.seq in wanted and wanted[row.seq] != row.entry_hash:
            return failed(row.seq, "it differs from the receipt given for it (the log was rewritten)")
        count, prev_hash, prev_time = row.seq, row.entry_hash, row.timestamp
        checked[row.seq] = row.entry_hash
    missing = sorted(seq for seq in wanted if seq not in checked)
    if missing:
        return failed(missing[0], "a receipt was issued for it but the log no longer holds it")
    if head[0] != count or head[1] != prev_hash:
        seq = count if head[0] == count else min(count, head[0]) + 1
        return failed(
            seq,
            f"the log ends at entry {count} but its head records entry {head[0]} {head[1][:16]} "
            "(entries were deleted or the head was changed)",
        )
    return AuditReport(count, head[0], head[1], server.fingerprint, True)
