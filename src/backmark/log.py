"""Progress lines of long runs (the demo, attacks, the reproduction): one callable, one line at a time.

Library functions take ``log: Log | None`` and write through :func:`say`; None is silence. The CLI passes
:func:`console` with the verb's ``-q``, so progress goes to stderr and the result alone to stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

Log = Callable[[str], None]


def to_stderr(text: str) -> None:
    """Print one progress line on stderr, at once (a long run is watched while it runs)."""
    print(text, file=sys.stderr, flush=True)


def console(*, quiet: bool) -> Log | None:
    """The CLI's log: stderr, or None with ``quiet``."""
    return None if quiet else to_stderr


def say(log: Log | None, text: str) -> None:
    """Write ``text`` to ``log`` unless it is None."""
    if log is not None:
        log(text)


__all__ = ["Log", "console", "say", "to_stderr"]


def _as_json(value: object) -> object:
    """What ``json.dumps`` cannot write: a mapping (a read-only view) as a dict, anything else as text."""
    return dict(value) if isinstance(value, Mapping) else str(value)


def print_json(obj: Any) -> None:
    """A verb's ``--json`` result: one indented JSON document on stdout (what is not JSON, as text)."""
    print(json.dumps(obj, indent=2, default=_as_json))


def print_result(args: argparse.Namespace, doc: Any, *lines: str) -> None:
    """A verb's result on stdout: ``doc`` as JSON with ``--json``, else (unless ``-q``) the ``lines``."""
    if args.json:
        print_json(doc)
    elif not args.quiet:
        for line in lines:
            print(line)
