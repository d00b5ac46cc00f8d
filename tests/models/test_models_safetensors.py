"""safetensors beside checkpoints: exact round trips, weights from elsewhere, and the user's own code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from backmark.errors import BackmarkError
from backmark.models import ModelInfo, build, load_checkpoint, load_safetensors, save_safetensors

INFO = ModelInfo("cnn", {"width": 4, "hidden": 8}, (1, 28, 28), 10, {"note": "x"})


def test_round_trip_gives_the_same_weights_and_info(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build(INFO).eval()
    path = save_safetensors(tmp_path / "m.safetensors", model, INFO)
    loaded, info = load_checkpoint(path)  # load_checkpoint tells the formats apart by their first bytes
    assert info == INFO and not loaded.training
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(BackmarkError, match="already exists"):
        save_safetensors(path, model, INFO)


def test_weights_from_elsewhere_load_with_the_info_given(tmp_path: Path) -> None:
    model = build(INFO)
    path = tmp_path / "hub.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(BackmarkError, match="without backmark's metadata"):
        load_safetensors(path)
    loaded, info = load_safetensors(path, info=INFO)
    assert info is INFO and torch.equal(
        loaded.state_dict()["features.0.weight"], model.state_dict()["features.0.weight"]
    )
    other = ModelInfo("cnn", {"width": 8, "hidden": 8}, (1, 28, 28), 10)
    with pytest.raises(BackmarkError, match="does not fit architecture cnn") as caught:
        load_safetensors(path, info=other)
    assert "features.0.weight is [4, 1, 5, 5], not [8, 1, 5, 5]" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bare_weights_that_do_not_fit_are_named_in_one_line(tmp_path: Path) -> None:
    """Missing, unexpected and reshaped tensors, and a wrapper's prefix, each said in the one line."""
    tensors = {k: v.contiguous() for k, v in build(INFO).state_dict().items()}
    save_file({f"module.{k}": v for k, v in tensors.items()}, str(tmp_path / "ddp.safetensors"))
    with pytest.raises(BackmarkError, match=r"tensors missing from the file .*prefix module\.: strip it"):
        load_checkpoint(tmp_path / "ddp.safetensors", info=INFO)
    del tensors["fc.bias"]
    save_file({**tensors, "extra.w": torch.zeros(1)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(BackmarkError, match=r"1 tensors missing from the file \(fc\.bias\); 1 tensors the "):
        load_checkpoint(tmp_path / "odd.safetensors", info=INFO)


def test_info_is_only_for_bare_weights(tmp_path: Path) -> None:
    """A file that records its architecture refuses a second description of it."""
    model = build(INFO)
    save_safetensors(tmp_path / "own.safetensors", model, INFO)
    with pytest.raises(BackmarkError, match=r"records its own architecture .*info is for bare weights"):
        load_checkpoint(tmp_path / "own.safetensors", info=INFO)
    from backmark.models import save_checkpoint

    save_checkpoint(tmp_path / "own.pt", model, INFO)
    with pytest.raises(BackmarkError, match="is a backmark checkpoint, which records its own architecture"):
        load_checkpoint(tmp_path / "own.pt", info=INFO)


def test_the_users_own_architecture_loads_only_with_allow_code(tmp_path: Path) -> None:
    mine = ModelInfo("torch.nn:Identity", {}, (1, 28, 28), 10)
    with pytest.raises(BackmarkError, match=r"torch\.nn:Identity, your own code.*--trust-code"):
        build(mine)
    with pytest.raises(BackmarkError, match="cannot be called as Linear"):
        build(ModelInfo("torch.nn:Linear", {}, (1, 28, 28), 10), allow_code=True)
