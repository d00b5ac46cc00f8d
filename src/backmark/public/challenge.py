"""The verifier's challenge: fresh randomness that picks which committed items a proof must open.

File ``challenge.json`` (format ``backmark-challenge``, version 1)::

    {"format": "backmark-challenge", "version": 1,
     "nonce": "<64 hex digits: 32 random bytes>",
     "created": "2026-12-01T10:00:00+00:00",
     "size": 25 | null,                 # items to open; null lets the prover choose (costs a larger
                                        # p-value correction, see backmark.public.selection)
     ...}                               # anything else a verifier adds (e.g. "verifier": "..."), kept

Its digest is SHA-256 over its canonical JSON (sorted keys, no spaces), every field included, so the
proof names exactly the challenge it answers. A verifier may write its own challenge file; the nonce must
hold at least 16 bytes, and must never be reused.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backmark.atomic import write_bytes
from backmark.errors import BackmarkError
from backmark.infra.canonical_json import canonical_digest, frozen_json
from backmark.infra.json_files import check_versioned, read_json

CHALLENGE_FORMAT = "backmark-challenge"
CHALLENGE_VERSION = 1
NONCE_BYTES = 32
MIN_NONCE_BYTES = 16


@dataclass(frozen=True)
class Challenge:
    """A parsed challenge; ``text`` is the whole document as JSON, extra fields included (:meth:`of`)."""

    text: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Challenge:
        return cls(frozen_json(doc))

    @property
    def doc(self) -> dict[str, Any]:
        """The document: a fresh dict at every call, so the challenge itself never changes."""
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed

    @property
    def nonce(self) -> bytes:
        return bytes.fromhex(self.doc["nonce"])

    @property
    def size(self) -> int | None:
        size = self.doc.get("size")
        return None if size is None else int(size)

    @property
    def created(self) -> str:
        return str(self.doc["created"])

    @property
    def digest(self) -> str:
        return canonical_digest(self.doc)


def new_challenge(size: int | None = None, **extra: Any) -> Challenge:
    """A fresh challenge: 32 random bytes from the OS, the time, and ``size`` if the verifier fixes it."""
    if size is not None and size < 1:
        raise BackmarkError(f"{{size}} must be at least 1, got {size}", params=["size"])
    doc = {
        **extra,
        "format": CHALLENGE_FORMAT,
        "version": CHALLENGE_VERSION,
        "nonce": secrets.token_hex(NONCE_BYTES),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": size,
    }
    return Challenge.of(doc)


def parse_challenge(doc: Any, where: str = "challenge") -> Challenge:
    """Check a challenge document; raise BackmarkError saying what is wrong with it."""
    check_versioned(doc, where, format=CHALLENGE_FORMAT, version=CHALLENGE_VERSION, noun="challenge")
    nonce = doc.get("nonce")
    try:
        raw = bytes.fromhex(nonce) if isinstance(nonce, str) else b""
    except ValueError:
        raw = b""
    if len(raw) < MIN_NONCE_BYTES:
        raise BackmarkError(
            f'{where}: "nonce" must be at least {MIN_NONCE_BYTES} random bytes in hex; write a new '
            "challenge with `backmark challenge`"
        )
    if not isinstance(doc.get("created"), str):
        raise BackmarkError(f'{where}: "created" must be a timestamp string')
    size = doc.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise BackmarkError(f'{where}: "size" must be a positive whole number or null')
    return Challenge.of(doc)


def save_challenge(challenge: Challenge, path: str | Path, *, force: bool = False) -> Path:
    text = json.dumps(challenge.doc, indent=1, sort_keys=True) + "\n"
    return write_bytes(path, text.encode(), mode=0o644, force=force)


def load_challenge(path: str | Path) -> Challenge:
    return parse_challenge(read_json(path, "challenge"), f"challenge {path}")
