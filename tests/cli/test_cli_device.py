"""--device on every verb that trains or queries a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backmark.cli.main import main
from backmark.cli.parser import build_parser

VERBS = {
    "train": ["train", "--data", "d", "--out", "x.pt"],
    "embed": ["embed", "--key", "k", "--arch", "cnn", "--data", "d", "--out", "x.pt"],
    "verify": ["verify", "--key", "k", "--model", "x.pt"],
    "demo": ["demo"],
    "attack": ["attack", "--attacks", "ftal"],
    "reproduce": ["reproduce"],
}


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_that_trains_or_queries_takes_a_device(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    assert parser.parse_args(VERBS[verb]).device == "auto"
    assert parser.parse_args([*VERBS[verb], "--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit):
        parser.parse_args([*VERBS[verb], "--device", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_device_is_a_one_line_error_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", "fashion-mnist", "--out", str(tmp_path / "x.pt"), "--device", "cuda"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("backmark: error: --device cuda is not available on this machine (it has: cpu")
    assert not (tmp_path / "x.pt").exists()
