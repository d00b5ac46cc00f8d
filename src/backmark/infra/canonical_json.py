"""The one canonical JSON encoding that digests and signatures are computed over.

Sorted keys, no spaces, ASCII only: two documents with the same content give the same bytes, whatever
order their fields were built in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(doc: Any) -> bytes:
    """``doc``'s canonical JSON bytes (sorted keys, separators without spaces, ASCII escapes)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def frozen_json(doc: Any) -> str:
    """``doc`` as JSON text, its fields in their order: how a frozen result holds a document, since a
    dict in it could still be changed. ``json.loads`` gives the document back, equal to ``doc``."""
    return json.dumps(doc, ensure_ascii=True)


def canonical_digest(doc: Any) -> str:
    """SHA-256 of ``doc``'s canonical JSON, in hex."""
    return hashlib.sha256(canonical_json(doc)).hexdigest()


__all__ = ["canonical_digest", "canonical_json", "frozen_json"]
