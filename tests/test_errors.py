"""Errors in the caller's words: the library names parameters, the CLI names its flags."""

from __future__ import annotations

import pytest

from backmark.cli.main import flag, main
from backmark.embed import TrainConfig
from backmark.errors import BackmarkError, first_line


def test_library_message_names_the_parameter_and_cli_the_flag() -> None:
    with pytest.raises(BackmarkError) as info:
        TrainConfig(epochs=0)
    assert str(info.value) == "epochs must be at least 1, got 0"
    assert info.value.render(flag) == "--epochs must be at least 1, got 0"
    err = BackmarkError("{num_classes} too small; pass {force}", params=["num_classes", "force"])
    assert str(err) == "num_classes too small; pass force=True"
    assert err.render(flag) == "--classes too small; pass --force"


def test_only_named_fields_are_replaced() -> None:
    err = BackmarkError("path /tmp/{x}/{force} exists; pass {force}", params=["force"])
    assert err.render(flag) == "path /tmp/{x}/--force exists; pass --force"


def test_first_line() -> None:
    assert first_line(RuntimeError("\n  first\nsecond")) == "first"
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(ValueError("word " * 100), limit=22) == "word word word word ..."
    assert first_line(RuntimeError("\x1b[31mred\x1b[0m alert")) == "red alert"
    assert first_line("a text\nsecond") == "a text"


def test_cli_prints_flags(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    code = main(["keygen", "--out", f"{tmp_path}/k", "--classes", "1", "--shape", "1x28x28"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "backmark: error: --classes must be at least 2, got 1"
