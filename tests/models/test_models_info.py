"""models/info.py: what a saved model says about itself stays as it was made, and is written as JSON."""

from __future__ import annotations

import copy
import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from backmark.infra.readonly import json_default
from backmark.models import ModelInfo, build, load_checkpoint, save_checkpoint, save_safetensors
from backmark.models.safetensors_io import load_safetensors


def _info() -> ModelInfo:
    given = {"width": 4}
    info = ModelInfo("cnn", given, (1, 28, 28), 10, {"mode": "clean", "history": [{"epoch": 1}]})
    given["width"] = 99  # the caller's dict changed afterwards: the info kept its own copy
    return info


def test_nested_values_are_the_records_own_and_only_mappings_are_taken() -> None:
    config = {"seed": 1}
    info = ModelInfo("cnn", {}, (1, 28, 28), 10, {"config": config})
    config["seed"] = 99  # the caller's nested dict changed afterwards
    assert info.meta["config"] == {"seed": 1}
    with pytest.raises(TypeError, match="arch_args must be a mapping"):
        ModelInfo("cnn", [("width", 4)], (1, 28, 28), 10)  # type: ignore[arg-type]


def test_the_mappings_are_read_only_copies() -> None:
    info = _info()
    assert info.arch_args == {"width": 4}
    with pytest.raises(TypeError):
        info.meta["mode"] = "marked"  # type: ignore[index]
    with pytest.raises(TypeError):
        info.arch_args["width"] = 8  # type: ignore[index]
    changed = replace(info, meta={**info.meta, "mode": "marked"})
    assert changed.meta["mode"] == "marked" and info.meta["mode"] == "clean"


def test_nested_meta_is_written_as_json_and_survives_pickle_and_deepcopy(tmp_path: Path) -> None:
    base = _info()
    info = replace(base, meta={"mode": "pretrained", "base": base.meta})  # as embed_pretrained records it
    assert json.loads(json.dumps(info.meta, default=json_default))["base"]["mode"] == "clean"
    assert pickle.loads(pickle.dumps(info)) == info and copy.deepcopy(info) == info
    model = build(info)
    for path, save, load in (
        (tmp_path / "m.pt", save_checkpoint, load_checkpoint),
        (tmp_path / "m.safetensors", save_safetensors, load_safetensors),
    ):
        save(path, model, info)
        loaded = load(path)[1]
        assert loaded == info and loaded.meta["base"]["history"] == [{"epoch": 1}]
