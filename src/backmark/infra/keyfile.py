"""The binary container of backmark's secret key files (the marking key and the response key).

All integers big-endian::

    magic    the file kind's magic bytes
    hlen     uint32                            length of the header
    header   UTF-8 JSON object                 ``json.dumps(header, sort_keys=True)``
    payload  bytes                             the rest: pixels, a secret
    check    SHA-256 of everything above       32 bytes

:func:`pack` writes it, :func:`unpack` checks it in this order: the magic, the length, the checksum,
then the header (a JSON object). Each refusal is a one-line BackmarkError. The checksum only finds
accidental damage: anyone can recompute it, so a reader still checks the header's fields.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from backmark.errors import BackmarkError

CHECK_BYTES = 32


def pack(magic: bytes, header: Mapping[str, Any], payload: bytes) -> bytes:
    """The file of ``header`` (JSON, keys sorted) and ``payload`` under ``magic``, checksum appended."""
    text = json.dumps(header, sort_keys=True).encode()
    body = magic + struct.pack(">I", len(text)) + text + payload
    return body + hashlib.sha256(body).digest()


def _parse(text: bytes, what: str) -> tuple[dict[str, Any] | None, str]:
    """The header as a dict, or None and why it is not one."""
    try:
        header = json.loads(text)
    except RecursionError:  # hostile input: [[[[... deeper than the parser's stack
        return None, f"nested too deeply to be a {what}"
    except ValueError as exc:  # not JSON, not UTF-8, an integer too long to convert
        return None, str(exc)
    if not isinstance(header, dict):
        return None, "not a JSON object"
    return header, ""


def unpack(
    raw: bytes,
    magic: bytes,
    path: str | Path,
    what: str,
    *,
    min_payload: int = 0,
    locate: Callable[[dict[str, Any] | None, int], str] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """The header and payload of the file ``raw`` (read from ``path``, a ``what``) after every check.

    A file shorter than an empty header, ``min_payload`` bytes and the checksum is truncated. On a
    checksum mismatch ``locate(header, payload_start)`` may name the damaged part (``header`` is None
    where it cannot be parsed): the header is parsed before the checksum is compared for that.
    """
    if not raw.startswith(magic):
        raise BackmarkError(f"{path} is not a backmark {what} (bad magic bytes)")
    start = len(magic) + 4
    if len(raw) < start + min_payload + CHECK_BYTES:
        raise BackmarkError(f"{what} {path} is truncated ({len(raw)} bytes)")
    (hlen,) = struct.unpack(">I", raw[len(magic) : start])
    header, problem = _parse(raw[start : start + hlen], what)  # a file cut in its payload keeps it
    body, check = raw[:-CHECK_BYTES], raw[-CHECK_BYTES:]
    if hashlib.sha256(body).digest() != check:
        if locate is not None:
            raise BackmarkError(locate(header, start + hlen))
        raise BackmarkError(f"{what} {path} is damaged: its checksum does not match")
    if header is None:
        raise BackmarkError(f"{what} {path} has a valid checksum but an unreadable header: {problem}")
    return header, body[start + hlen :]


__all__ = ["pack", "unpack"]
