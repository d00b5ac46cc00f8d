"""The registry's documents and hashes: submissions, entries, receipts. Pure functions, no I/O.

- A **submission** is what an owner signs (purpose ``registry-submission``)::

      {"format": "backmark-registration", "version": 1, "registry": SERVER FINGERPRINT,
       "vk_digest": HEX64, "model_digest": HEX64 or null, "siblings_digest": HEX64 (optional),
       "nonce": 32 hex, "signed_at": TIME, "signature": {...}}

  ``registry`` binds it to one registry; ``nonce`` and ``signed_at`` make each submission unique and
  fresh, so a copy sent again is recognised (its hash is already recorded) and an old one is refused.
  ``siblings_digest`` (the digest of a sibling record, :mod:`backmark.sibling_record`) is optional: a
  submission without siblings does not carry the field at all (absent means null), so such documents
  are exactly what they were before the field existed, and old submissions and receipts still verify.
- An **entry** is a submission placed in the log: ``seq`` (1, 2, ...), the server's ``timestamp``,
  ``submission_hash`` = SHA-256 of the submission's canonical JSON, ``prev_hash`` (the previous entry's
  hash; 64 zeros before entry 1) and ``entry_hash`` = SHA-256 of the canonical JSON of those four.
- A **receipt** is the entry's public summary, signed by the server (purpose ``registry-receipt``); it
  carries ``siblings_digest`` only when the submission gave one.

The entry hash covers the submission's hash, so ``siblings_digest`` is chained through it; what the entry
hash itself covers is unchanged, and so is every existing entry's hash.

Times are UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: fixed width, so text order is time order.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backmark.errors import BackmarkError
from backmark.identity import (
    SIGNATURE_SCHEMA,
    Identity,
    PublicIdentity,
    check_document_signature,
    is_hex_digest,
    sign_document,
)
from backmark.infra.canonical_json import canonical_json
from backmark.infra.schema import (
    HEX64,
    Anything,
    Const,
    Integer,
    Nullable,
    Record,
    Schema,
    SchemaError,
    Text,
)

SUBMISSION_FORMAT = "backmark-registration"
RECEIPT_FORMAT = "backmark-registry-receipt"
VERSION = 1
SUBMISSION_PURPOSE = "registry-submission"
RECEIPT_PURPOSE = "registry-receipt"
GENESIS = "0" * 64
MAX_SKEW = 300.0  # seconds a submission's signed_at may differ from the server's clock
TIME = Text(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", 27, 27, "a time YYYY-MM-DDTHH:MM:SS.ffffffZ")
# The one declared form of a submission: every field exactly (type, full match, length), no other field.
SUBMISSION_SCHEMA = Record(
    {
        "format": Const(SUBMISSION_FORMAT),
        "version": Const(VERSION),
        "registry": HEX64,
        "vk_digest": HEX64,
        "model_digest": Nullable(HEX64),
        "siblings_digest": Nullable(HEX64),
        "nonce": Text(r"[0-9a-f]{32}", 32, 32, "32 lower-case hex digits"),
        "signed_at": TIME,
        "signature": SIGNATURE_SCHEMA,
    },
    optional=frozenset({"signature", "siblings_digest"}),
)


# The fields an entry and its receipt share: where it stands in the log, what it records, its hashes.
_PLACED: dict[str, Schema] = {
    "entry": Integer(1, 2**62),
    "timestamp": TIME,
    "vk_digest": HEX64,
    "model_digest": Nullable(HEX64),
    "siblings_digest": HEX64,  # only when the submission gave one (absent: null)
    "owner": HEX64,
    "submission_hash": HEX64,
    "prev_hash": HEX64,
    "entry_hash": HEX64,
}
RECEIPT_SCHEMA = Record(
    {
        "format": Const(RECEIPT_FORMAT),
        "version": Const(VERSION),
        "registry": HEX64,
        **_PLACED,
        "signature": SIGNATURE_SCHEMA,
    },
    optional=frozenset({"siblings_digest"}),
)
# An entry as the registry serves it; the submission inside is checked by the audit (check_submission).
ENTRY_SCHEMA = Record(
    {**_PLACED, "submission": Anything(), "receipt": RECEIPT_SCHEMA},
    optional=frozenset({"siblings_digest"}),
)


class Refused(BackmarkError):
    """A request the registry refuses: ``status`` is its HTTP status, ``code`` a stable word for it."""

    def __init__(self, message: str, *, status: int, code: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail


def utc_text(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as fixed-width UTC text with microseconds."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> datetime:
    if not isinstance(text, str) or len(text) != 27 or not text.endswith("Z"):
        raise ValueError(f"{str(text)[:40]!r} is not a time YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_submission(
    identity: Identity,
    *,
    registry: str,
    vk_digest: str,
    model_digest: str | None = None,
    siblings_digest: str | None = None,
    signed_at: datetime | None = None,
) -> dict[str, Any]:
    """A fresh submission of ``vk_digest`` to the registry whose fingerprint is ``registry``, signed.

    ``siblings_digest`` (a sibling record's digest) is added only when given: without it the submission
    is what it was before the field existed.
    """
    named = (("vk_digest", vk_digest), ("model_digest", model_digest), ("siblings_digest", siblings_digest))
    for name, value in named:
        if value is not None and not is_hex_digest(value):
            raise BackmarkError(f"{{{name}}} must be 64 lower-case hex digits (SHA-256)", params=[name])
    doc = {
        "format": SUBMISSION_FORMAT,
        "version": VERSION,
        "registry": registry,
        "vk_digest": vk_digest,
        "model_digest": model_digest,
        **({} if siblings_digest is None else {"siblings_digest": siblings_digest}),
        "nonce": secrets.token_hex(16),
        "signed_at": utc_text(signed_at),
    }
    return sign_document(identity, doc, SUBMISSION_PURPOSE)


@dataclass(frozen=True)
class Submission:
    """A submission whose form and signature were checked; ``text`` is its canonical JSON."""

    text: str
    owner: PublicIdentity
    hash: str
    vk_digest: str
    model_digest: str | None
    signed_at: str
    siblings_digest: str | None = None  # absent from the submission: None

    @property
    def doc(self) -> dict[str, Any]:
        """The signed submission (a fresh copy)."""
        doc: dict[str, Any] = json.loads(self.text)
        return doc


def check_submission(doc: Any, *, registry: str | None = None) -> Submission:
    """Check a submission's fields and signature (not its age); refusals carry their HTTP status.

    ``registry``: the fingerprint the submission must name (None: any, as in an audit).
    """
    if not isinstance(doc, dict):
        raise Refused("the body must be a JSON object (a signed submission)", status=400, code="malformed")
    if doc.get("format") != SUBMISSION_FORMAT or doc.get("version") != VERSION:
        raise Refused(
            f"the body is not a {SUBMISSION_FORMAT} v{VERSION} submission", status=400, code="malformed"
        )
    try:
        SUBMISSION_SCHEMA.check(doc)
        parse_time(doc["signed_at"])
    except (SchemaError, ValueError) as exc:
        raise Refused(f"the submission: {exc}", status=400, code="malformed") from None
    if "signature" not in doc:
        raise Refused("the submission is not signed", status=400, code="unsigned")
    try:
        owner = check_document_signature(doc, SUBMISSION_PURPOSE, what="the submission")
    except Refused:
        raise
    except BackmarkError as exc:
        raise Refused(str(exc), status=403, code="bad-signature") from None
    if registry is not None and doc["registry"] != registry:
        raise Refused(
            f"the submission is addressed to registry {str(doc['registry'])[:16]}, not to this one "
            f"({registry[:16]})",
            status=400,
            code="wrong-registry",
        )
    text = canonical_json(doc)
    return Submission(
        text=text.decode(),
        owner=owner,
        hash=sha256_hex(text),
        vk_digest=doc["vk_digest"],
        model_digest=doc["model_digest"],
        signed_at=doc["signed_at"],
        siblings_digest=doc.get("siblings_digest"),
    )


def check_fresh(submission: Submission, now: datetime, *, max_skew: float = MAX_SKEW) -> None:
    """Refuse (422) a submission signed more than ``max_skew`` seconds from ``now``."""
    skew = (parse_time(submission.signed_at) - now).total_seconds()
    if abs(skew) > max_skew:
        when = "ago" if skew < 0 else "ahead"
        raise Refused(
            f"the submission was signed {abs(skew):.0f} s {when} (at most {max_skew:.0f} s allowed); "
            "sign a fresh one and check the clock",
            status=422,
            code="stale",
        )


def entry_hash(*, seq: int, timestamp: str, submission_hash: str, prev_hash: str) -> str:
    body = {"seq": seq, "timestamp": timestamp, "submission_hash": submission_hash, "prev_hash": prev_hash}
    return sha256_hex(canonical_json(body))


@dataclass(frozen=True)
class Entry:
    """One row of the log, as stored (``submission`` is the signed submission's JSON object)."""

    seq: int
    timestamp: str
    vk_digest: str
    model_digest: str | None
    owner: str  # the owner's fingerprint
    submission_json: str  # the signed submission, as JSON text
    submission_hash: str
    prev_hash: str
    entry_hash: str
    server_signature: str  # base64 Ed25519 signature of the receipt
    siblings_digest: str | None = None  # a sibling record's digest, if the submission gave one

    @property
    def submission(self) -> dict[str, Any]:
        """The signed submission (a fresh copy); a BackmarkError if its text is not a JSON object."""
        doc = load_json(self.submission_json, f"the submission of entry {self.seq}")
        if not isinstance(doc, dict):
            raise BackmarkError(f"the submission of entry {self.seq} is not a JSON object")
        return doc

    def _siblings(self) -> dict[str, Any]:
        """``{"siblings_digest": ...}``, or nothing when there is none (documents without siblings keep
        the form, and so the signatures and hashes, they had before the field existed)."""
        return {} if self.siblings_digest is None else {"siblings_digest": self.siblings_digest}

    def receipt_body(self, server: str) -> dict[str, Any]:
        """The receipt without its signature; ``server`` is the registry's fingerprint."""
        return {
            "format": RECEIPT_FORMAT,
            "version": VERSION,
            "registry": server,
            "entry": self.seq,
            "timestamp": self.timestamp,
            "vk_digest": self.vk_digest,
            "model_digest": self.model_digest,
            **self._siblings(),
            "owner": self.owner,
            "submission_hash": self.submission_hash,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
        }

    def receipt(self, server: PublicIdentity) -> dict[str, Any]:
        """The signed receipt (the stored signature, with the server's public key beside it)."""
        body = self.receipt_body(server.fingerprint)
        signature = {
            "algorithm": "ed25519",
            "public_key": server.to_json()["public_key"],
            "fingerprint": server.fingerprint,
            "purpose": RECEIPT_PURPOSE,
            "value": self.server_signature,
        }
        return {**body, "signature": signature}

    def to_json(self, server: PublicIdentity) -> dict[str, Any]:
        return {
            "entry": self.seq,
            "timestamp": self.timestamp,
            "vk_digest": self.vk_digest,
            "model_digest": self.model_digest,
            **self._siblings(),
            "owner": self.owner,
            "submission": self.submission,
            "submission_hash": self.submission_hash,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
            "receipt": self.receipt(server),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Entry:
        """An entry from :meth:`to_json`'s form (as a lookup or a remote audit receives it)."""
        try:
            ENTRY_SCHEMA.check(doc, "entry")
            if not isinstance(doc["submission"], dict):
                raise SchemaError("entry.submission must be a JSON object")
        except SchemaError as exc:
            raise BackmarkError(f"a registry entry is malformed: {exc}") from None
        try:
            receipt = doc["receipt"]
            return cls(
                seq=int(doc["entry"]),
                timestamp=str(doc["timestamp"]),
                vk_digest=str(doc["vk_digest"]),
                model_digest=None if doc["model_digest"] is None else str(doc["model_digest"]),
                siblings_digest=None if doc.get("siblings_digest") is None else str(doc["siblings_digest"]),
                owner=str(doc["owner"]),
                submission_json=canonical_json(dict(doc["submission"])).decode(),
                submission_hash=str(doc["submission_hash"]),
                prev_hash=str(doc["prev_hash"]),
                entry_hash=str(doc["entry_hash"]),
                server_signature=str(receipt["signature"]["value"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackmarkError(f"a registry entry is missing or has a bad field: {exc}") from None


def next_entry(
    submission: Submission, *, seq: int, timestamp: str, prev_hash: str, server: Identity
) -> Entry:
    """The entry that appends ``submission`` after the entry ``seq - 1`` whose hash is ``prev_hash``."""
    digest = entry_hash(seq=seq, timestamp=timestamp, submission_hash=submission.hash, prev_hash=prev_hash)
    unsigned = Entry(
        seq=seq,
        timestamp=timestamp,
        vk_digest=submission.vk_digest,
        model_digest=submission.model_digest,
        siblings_digest=submission.siblings_digest,
        owner=submission.owner.fingerprint,
        submission_json=submission.text,
        submission_hash=submission.hash,
        prev_hash=prev_hash,
        entry_hash=digest,
        server_signature="",
    )
    signed = sign_document(server, unsigned.receipt_body(server.public.fingerprint), RECEIPT_PURPOSE)
    return Entry(**{**unsigned.__dict__, "server_signature": signed["signature"]["value"]})


def check_receipt_format(doc: Any, where: str = "") -> dict[str, Any]:
    """``doc`` if it is a JSON object with ``"format": RECEIPT_FORMAT``, else a one-line BackmarkError:
    "``where`` is not a backmark registry receipt" (without ``where``, from "not")."""
    if not isinstance(doc, dict) or doc.get("format") != RECEIPT_FORMAT:
        said = "not a backmark registry receipt"
        raise BackmarkError(f"{where} is {said}" if where else said)
    return doc


def check_receipt(receipt: Any, server: PublicIdentity) -> dict[str, Any]:
    """``receipt`` if it is a receipt signed by ``server``, else a BackmarkError saying why."""
    doc = check_receipt_format(receipt)
    check_document_signature(doc, RECEIPT_PURPOSE, signer=server, what=f"receipt {doc.get('entry')}")
    return doc


def load_json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise BackmarkError(f"{what} is not valid JSON") from None
