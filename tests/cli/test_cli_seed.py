"""``train`` and ``embed`` draw a fresh seed unless ``--seed`` is given, print it and record it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backmark.cli.main import main
from backmark.cli.parser import build_parser
from backmark.data import ImageDataset
from backmark.models import load_checkpoint


def test_train_and_embed_have_no_fixed_default_seed() -> None:
    parser = build_parser()
    assert parser.parse_args(["train", "--data", "d", "--out", "x.pt"]).seed is None
    assert (
        parser.parse_args(["embed", "--key", "k", "--arch", "cnn", "--data", "d", "--out", "x"]).seed is None
    )
    assert parser.parse_args(["train", "--data", "d", "--out", "x.pt", "--seed", "4"]).seed == 4


def test_a_fresh_seed_is_printed_recorded_and_repeats_the_run(
    tmp_path: Path, fashion: ImageDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = [
        "train",
        "--data",
        "fashion-mnist",
        "--train-subset",
        "200",
        "--test-subset",
        "100",
        "--epochs",
        "1",
    ]
    seeds = []
    assert main([*tiny, "--out", str(tmp_path / "a.pt"), "--json"]) == 0
    seeds.append(json.loads(capsys.readouterr().out)["seed"])
    assert main([*tiny, "--out", str(tmp_path / "b.pt")]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("  seed ") and "(drawn fresh; --seed " in line
    seeds.append(int(line.split()[1]))
    for name, seed in zip(("a.pt", "b.pt"), seeds, strict=True):
        assert load_checkpoint(tmp_path / name)[1].meta["config"]["seed"] == seed
    assert seeds[0] != seeds[1]
    assert main([*tiny, "--out", str(tmp_path / "c.pt"), "--seed", str(seeds[0]), "-q"]) == 0
    a, c = load_checkpoint(tmp_path / "a.pt")[0], load_checkpoint(tmp_path / "c.pt")[0]
    assert all((a.state_dict()[k] == v).all() for k, v in c.state_dict().items())
