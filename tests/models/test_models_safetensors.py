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
    with pytest.raises(BackmarkError, match="does not fit its architecture cnn"):
        load_safetensors(path, info=other)


def test_the_users_own_architecture_loads_only_with_allow_code(tmp_path: Path) -> None:
    mine = ModelInfo("torch.nn:Identity", {}, (1, 28, 28), 10)
    with pytest.raises(BackmarkError, match=r"torch\.nn:Identity, your own code.*--trust-code"):
        build(mine)
    with pytest.raises(BackmarkError, match="cannot be called as Linear"):
        build(ModelInfo("torch.nn:Linear", {}, (1, 28, 28), 10), allow_code=True)
