"""Progress lines of long runs: stderr unless quiet, nothing when there is no log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from backmark.infra.readonly import readonly
from backmark.log import console, print_json, print_result, say, to_stderr


def test_progress_goes_to_stderr_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert console(quiet=True) is None and console(quiet=False) is to_stderr
    say(console(quiet=False), "step 1")
    say(console(quiet=True), "step 2")
    out, err = capsys.readouterr()
    assert (out, err) == ("", "step 1\n")
    lines: list[str] = []
    say(lines.append, "into a list")
    assert lines == ["into a list"]


def test_a_result_is_json_or_lines_or_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"path": Path("k"), "n": 2}
    for json_, quiet, expected in [
        (True, False, '{\n  "path": "k",\n  "n": 2\n}\n'),  # --json wins over -q, as the verbs had it
        (True, True, '{\n  "path": "k",\n  "n": 2\n}\n'),
        (False, False, "first\n  second\n"),
        (False, True, ""),
    ]:
        print_result(argparse.Namespace(json=json_, quiet=quiet), doc, "first", "  second")
        assert capsys.readouterr() == (expected, "")


def test_json_writes_read_only_mappings_as_objects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_json({"meta": readonly({"base": readonly({"mode": "clean"})}), "path": Path("a/b")})
    assert json.loads(capsys.readouterr().out) == {"meta": {"base": {"mode": "clean"}}, "path": "a/b"}
