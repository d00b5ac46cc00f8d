"""Running the command line in-process from a test: exit status, stdout and stderr."""

from __future__ import annotations

import pytest

from backmark.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``backmark ARGV...`` as a test runs it: the exit status and what it printed (stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
