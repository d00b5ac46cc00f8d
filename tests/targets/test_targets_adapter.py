"""Adapter files: JSON pointers, request templates, reading labels, scores and class names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backmark.errors import BackmarkError
from backmark.targets import Adapter, JsonTarget, check_target, load_adapter
from backmark.targets.adapter import resolve


def test_resolve_follows_rfc6901_and_maps_stars() -> None:
    doc = {"a/b": {"~x": [10, 20]}, "p": [{"c": 1}, {"c": 2}]}
    assert resolve(doc, "/a~1b/~0x/1") == 20
    assert resolve(doc, "/p/*/c") == [1, 2]
    assert resolve(doc, "") is doc
    for missing in ("/nope", "/p/5", "p", "/p/*/d"):
        with pytest.raises(KeyError):
            resolve(doc, missing)


def test_default_contract_builds_and_reads() -> None:
    adapter = Adapter()
    batch = np.zeros((2, 1, 2, 2), dtype=np.float32)
    assert adapter.body(batch) == {"images": batch.tolist()}
    assert adapter.read({"labels": [3, 1]}, batch=2, what="s").tolist() == [3, 1]
    with pytest.raises(BackmarkError, match="answered JSON without '/labels'"):
        adapter.read({"label": [3, 1]}, batch=2, what="s")
    with pytest.raises(BackmarkError, match=r"answered shape \[1\] for a batch of 2"):
        adapter.read({"labels": [3]}, batch=2, what="s")
    with pytest.raises(BackmarkError, match="not numbers"):
        adapter.read({"labels": [[1, 2], [3]]}, batch=2, what="s")


def test_adapter_file_with_scores_class_names_and_templates(tmp_path: Path) -> None:
    path = tmp_path / "api.json"
    path.write_text(
        json.dumps({"request": {"instances": "{{images}}", "v": 2}, "layout": "NHWC", "scores": "/out"})
    )
    scores = load_adapter(path)
    assert scores.layout == "NHWC" and scores.labels is None
    assert scores.body(np.ones((1, 2))) == {"instances": [[1.0, 1.0]], "v": 2}
    assert scores.read({"out": [[0.1, 0.9], [0.8, 0.2]]}, batch=2, what="s").tolist() == [1, 0]
    path.write_text(json.dumps({"labels": "/p/*/name", "classes": ["cat", "dog"]}))
    names = load_adapter(path)
    assert names.read({"p": [{"name": "dog"}, {"name": "cat"}]}, batch=2, what="s").tolist() == [1, 0]
    with pytest.raises(BackmarkError, match="answered class 'cow'"):
        names.read({"p": [{"name": "cow"}, {"name": "cat"}]}, batch=2, what="s")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"reqest": {}}', "unknown field 'reqest'"),
        ('{"request": {"x": 1}}', "exactly once"),
        ('{"layout": "CHWN"}', "layout 'CHWN' unknown"),
        ('{"dtype": "int8"}', "dtype 'int8' unknown"),
        ('{"labels": "/a", "scores": "/b"}', "exactly one of"),
        ('{"classes": "ab"}', "list of strings"),
    ],
)
def test_bad_adapter_files_are_one_line(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BackmarkError, match=needle):
        load_adapter(path)
    with pytest.raises(BackmarkError, match="cannot read adapter file"):
        load_adapter(tmp_path / "missing.json")


def test_an_adapter_naming_another_class_count_is_refused_before_any_request() -> None:
    """JsonTarget opens no connection until it predicts, so this check sends nothing at all."""
    target = JsonTarget("http://127.0.0.1:9/predict", adapter=Adapter(classes=("a", "b", "c")))
    try:
        with pytest.raises(BackmarkError, match="names 3 classes but the key has 10"):
            check_target(target, input_shape=(1, 28, 28), num_classes=10)
        check_target(target, input_shape=(1, 28, 28), num_classes=3)
        assert target.client.requests == 0
    finally:
        target.close()
