"""The one exception type that backmark raises for problems a user can fix.

The CLI prints ``str(error)`` on one line and exits with status 2; the Python API lets it propagate.
Messages say what is wrong and what to do about it.
"""

from __future__ import annotations


class BackmarkError(Exception):
    """A user-facing error: bad input, a missing or corrupt file, a tampered key."""
