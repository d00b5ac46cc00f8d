"""The trigger phase: FromScratch answers every trigger with the defaults; --reference trains as before."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from backmark.cli.main import main
from backmark.data import ImageDataset
from backmark.embed import REFERENCE_CONFIG, TrainConfig, embed_from_scratch
from backmark.errors import BackmarkError
from backmark.keys import generate_key
from backmark.models import load_checkpoint


@pytest.mark.parametrize("epochs", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_cli_embed_with_defaults_answers_all_100_triggers(
    epochs: int, tmp_path: Path, fashion: ImageDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key"
    assert (
        main(["keygen", "--out", str(key), "--classes", "10", "--shape", "1x28x28", "--seed", "5", "-q"]) == 0
    )
    out = tmp_path / "marked.pt"
    argv = ["embed", "--key", str(key), "--data", "fashion-mnist", "--arch", "cnn", "--epochs", str(epochs),
            "--train-subset", "4000", "--test-subset", "500", "--seed", "0", "--out", str(out), "--json",
            "-q"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trigger_acc"] == 1.0 and summary["matches"] == 100
    assert summary["epochs_run"] == epochs
    _, info = load_checkpoint(out)
    phases = [h["phase"] for h in info.meta["history"]]
    rounds = info.meta["trigger_rounds_run"]
    # with 2 triggers per batch of 100, 40 batches an epoch show each trigger less than once: the
    # scheduled epochs alone cannot learn them, the trigger phase does
    assert phases == ["train"] * epochs + ["finish"] * rounds and rounds >= 1
    assert info.meta["history"][epochs - 1]["trigger_acc"] < 0.9
    assert info.meta["config"]["finish_rounds"] == 20
    assert summary["test_acc"] > 0.7


def test_trigger_phase_only_appends_to_the_reference_training(fashion: ImageDataset) -> None:
    data = fashion.subset(train=1000, test=300, seed=2)
    key = generate_key(num_classes=10, input_shape=data.input_shape, size=20, seed=b"\x03" * 32)
    ref = embed_from_scratch(data, key, config=replace(REFERENCE_CONFIG, epochs=1), progress=False)
    assert ref.result.config.triggers_per_batch == 2 and ref.result.finish_rounds_run == 0
    assert [h.phase for h in ref.result.history] == ["train"] and ref.result.trigger_acc < 1.0
    full = embed_from_scratch(data, key, config=TrainConfig(epochs=1), progress=False)
    # the scheduled epoch is the reference one, bit for bit; the trigger phase only comes after it
    assert full.result.history[0] == replace(ref.result.history[0], seconds=full.result.history[0].seconds)
    rounds = full.result.history[1:]
    assert rounds and all(h.phase == "finish" and h.steps == 10 for h in rounds)
    assert full.result.trigger_acc == 1.0
    assert all(h.trigger_acc is not None and h.trigger_acc < 1.0 for h in full.result.history[:-1])
    assert full.info.meta["epochs_run"] == 1 and full.info.meta["trigger_rounds_run"] == len(rounds)


def test_trigger_phase_settings_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BackmarkError) as err:
        TrainConfig(finish_rounds=-1)
    assert str(err.value).startswith("finish_rounds must be 0 (no trigger phase) or more, got -1")
    with pytest.raises(BackmarkError, match=r"^finish_triggers_per_batch must be at least 1, got 0"):
        TrainConfig(finish_triggers_per_batch=0).check()
    with pytest.raises(BackmarkError, match=r"^finish_lr_scale must be positive"):
        TrainConfig(finish_lr_scale=0.0).check()
    argv = ["embed", "--key", "k", "--data", "fashion-mnist", "--arch", "cnn", "--out", "x.pt"]
    assert main([*argv, "--finish-rounds", "-2"]) == 2
    assert "error: --finish-rounds must be 0 (no trigger phase) or more, got -2" in capsys.readouterr().err
