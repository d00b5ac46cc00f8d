"""The response key: the secret that decides which answers of a served model are altered, and how.

File format (``.bmrk``), the container of :mod:`backmark.infra.keyfile`::

    magic   b"BACKMARK-RK\\n"                  12 bytes
    hlen    uint32                            length of the header
    header  UTF-8 JSON                        format, version, key_id, rate (a decimal string), created
    secret  32 bytes                          the HMAC-SHA256 key
    check   SHA-256 of everything above       32 bytes

Kept like the marking key: written atomically with mode 0600 (:mod:`backmark.atomic`), never over an
existing file unless ``force``, and refused on load if any byte changed. ``key_id`` is a public name for
the key (a hash of the secret under a domain tag): the query log records it, so a log is never checked
against another key.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

from backmark.atomic import write_bytes
from backmark.errors import BackmarkError
from backmark.infra.json_files import read_file
from backmark.infra.keyfile import pack, unpack

RK_MAGIC = b"BACKMARK-RK\n"
RK_FORMAT = "backmark-response-key"
RK_VERSION = 1
SECRET_BYTES = 32
DEFAULT_RATE = "0.01"
MAX_RATE = Fraction(1, 2)  # more altered answers than this would be a different model, not a mark


def parse_rate(rate: str | float) -> Fraction:
    """``rate`` as the exact decimal it was written as (0.01 is 1/100); must lie in (0, 1/2]."""
    try:
        value = Fraction(str(rate))
    except (ValueError, ZeroDivisionError):
        raise BackmarkError(f"the response rate must be a number, got {rate!r}") from None
    if not 0 < value <= MAX_RATE:
        raise BackmarkError(f"the response rate must lie in (0, 0.5], got {rate}")
    return value


def _key_id(secret: bytes) -> str:
    return hashlib.sha256(b"backmark/response-key/id/v1\x00" + secret).hexdigest()[:16]


@dataclass(frozen=True)
class ResponseKey:
    """A secret ``secret`` (32 bytes) and the fraction ``rate`` of query images whose answer is altered."""

    secret: bytes
    rate: Fraction
    created: str

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_BYTES:
            raise BackmarkError(f"a response key's secret is {SECRET_BYTES} bytes, got {len(self.secret)}")
        if not 0 < self.rate <= MAX_RATE:
            raise BackmarkError(f"the response rate must lie in (0, 0.5], got {self.rate}")

    @property
    def key_id(self) -> str:
        return _key_id(self.secret)

    def __repr__(self) -> str:  # never print the secret
        return f"ResponseKey(key_id={self.key_id!r}, rate={self.rate})"


def generate_response_key(*, rate: str | float = DEFAULT_RATE, secret: bytes | None = None) -> ResponseKey:
    """A fresh key with a secret from the OS (or ``secret``, for tests) and ``rate``."""
    return ResponseKey(
        secret=secrets.token_bytes(SECRET_BYTES) if secret is None else secret,
        rate=parse_rate(rate),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def response_key_bytes(key: ResponseKey) -> bytes:
    header = {
        "format": RK_FORMAT,
        "version": RK_VERSION,
        "key_id": key.key_id,
        "rate": f"{key.rate.numerator}/{key.rate.denominator}",
        "created": key.created,
    }
    return pack(RK_MAGIC, header, key.secret)


def save_response_key(key: ResponseKey, path: str | Path, *, force: bool = False) -> Path:
    """Write ``key`` to ``path`` atomically, mode 0600; an existing file only with ``force``."""
    return write_bytes(path, response_key_bytes(key), force=force, mode=0o600)


def load_response_key(path: str | Path) -> ResponseKey:
    """Read and integrity-check a response key; any damage raises BackmarkError."""
    path = Path(path)
    header, secret = unpack(
        read_file(path, "response key"), RK_MAGIC, path, "response key", min_payload=SECRET_BYTES
    )
    try:
        if header.get("format") != RK_FORMAT or header.get("version") != RK_VERSION:
            raise BackmarkError(
                f"{path} is response key format {header.get('format')} v{header.get('version')}; "
                f"this backmark reads {RK_FORMAT} v{RK_VERSION}"
            )
        key = ResponseKey(secret=secret, rate=Fraction(str(header["rate"])), created=str(header["created"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise BackmarkError(f"response key {path} has a missing or bad field: {exc}") from None
    if key.key_id != header.get("key_id"):
        raise BackmarkError(f"response key {path} is inconsistent: its key_id does not match its secret")
    return key
