"""Progress lines of long runs: stderr unless quiet, nothing when there is no log."""

from __future__ import annotations

import pytest

from backmark.log import console, say, to_stderr


def test_progress_goes_to_stderr_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert console(quiet=True) is None and console(quiet=False) is to_stderr
    say(console(quiet=False), "step 1")
    say(console(quiet=True), "step 2")
    out, err = capsys.readouterr()
    assert (out, err) == ("", "step 1\n")
    lines: list[str] = []
    say(lines.append, "into a list")
    assert lines == ["into a list"]
