"""Fixtures of the command-line tests."""

from __future__ import annotations

from cli_helpers import registry  # noqa: F401  (a registry on a SQLite file, served in this process)
