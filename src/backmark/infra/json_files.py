"""Reading the files backmark exchanges: raw bytes, JSON, and versioned JSON documents.

A versioned document names itself: ``{"format": "backmark-NAME", "version": N, ...}``. Every reader
checks both before it reads a field, so a file of another kind or version is refused in one line that
says what it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backmark.errors import BackmarkError


def read_file(path: str | Path, what: str, hint: str = "") -> bytes:
    """The bytes of ``what`` at ``path``; a missing, folder or unreadable path is a one-line BackmarkError
    (``hint``, if given, follows "not found")."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BackmarkError(f"{what} {path} not found{hint}") from None
    except IsADirectoryError:
        raise BackmarkError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise BackmarkError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_json(path: str | Path, what: str, hint: str = "") -> Any:
    """A JSON file's content; a missing, unreadable or malformed file raises a one-line BackmarkError
    (``hint`` as in :func:`read_file`)."""
    raw = read_file(path, what, hint)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BackmarkError(f"{what} {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise BackmarkError(f"{what} {path} is not UTF-8 text") from None
    except RecursionError:  # hostile input: [[[[... deeper than the parser's stack
        raise BackmarkError(f"{what} {path} is nested too deeply to be a {what}") from None
    except ValueError as exc:  # an integer too long to convert, for one
        raise BackmarkError(f"{what} {path} cannot be read as JSON ({exc})") from None


def check_versioned(doc: Any, where: str, *, format: str, version: int, noun: str, hint: str = "") -> None:
    """Refuse ``doc`` unless it is a JSON object of ``format`` at ``version``.

    ``where`` names the document in the message, ``noun`` its kind ("proof", "claim"); ``hint`` replaces
    the default reason of a wrong format (which names the ``"format"`` field expected).
    """
    if not isinstance(doc, dict) or doc.get("format") != format:
        reason = hint or f'no "format": "{format}"'
        raise BackmarkError(f"{where} is not a backmark {noun} ({reason})")
    if doc.get("version") != version:
        raise BackmarkError(f"{where} is {noun} v{doc.get('version')}; this backmark reads v{version}")


__all__ = ["check_versioned", "read_file", "read_json"]
