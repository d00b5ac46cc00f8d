"""Target strings: every accepted form, and ambiguous ones refused with the accepted forms."""

from __future__ import annotations

import pytest

from backmark.errors import BackmarkError
from backmark.targets import TargetSpec, open_target, parse_target


@pytest.mark.parametrize(
    ("text", "protocol", "spec"),
    [
        ("ckpt:models/m.pt", None, TargetSpec("ckpt", "models/m.pt")),
        ("onnx:m.onnx", None, TargetSpec("onnx", "m.onnx")),
        ("ONNX:C:/m.onnx", None, TargetSpec("onnx", "C:/m.onnx")),
        ("torchscript:/abs/m.ts", None, TargetSpec("torchscript", "/abs/m.ts")),
        ("http://127.0.0.1:8000/v2/models/m", "v2", TargetSpec("v2", "http://127.0.0.1:8000/v2/models/m")),
        ("https://api.example/predict", "json", TargetSpec("json", "https://api.example/predict")),
    ],
)
def test_accepted_forms(text: str, protocol: str | None, spec: TargetSpec) -> None:
    assert parse_target(text, protocol=protocol) == spec


@pytest.mark.parametrize(
    ("text", "protocol", "needle"),
    [
        ("m.onnx", None, "did you mean onnx:m.onnx"),
        ("m.pt", None, "ckpt:m.pt .* or torchscript:m.pt"),
        ("something", None, "does not say what it is; accepted forms: ckpt:PATH; onnx:PATH"),
        ("onnx:", None, "no path"),
        ("http://host/v2/models/m", None, "protocol v2 or json"),
        ("onnx:m.onnx", "v2", "applies to http"),
        ("http://host/x", "grpc", "unknown protocol"),
    ],
)
def test_ambiguous_or_wrong_forms_are_refused(text: str, protocol: str | None, needle: str) -> None:
    with pytest.raises(BackmarkError, match=needle) as info:
        parse_target(text, protocol=protocol)
    assert "\n" not in str(info.value)


def test_options_for_another_kind_are_refused() -> None:
    with pytest.raises(BackmarkError, match="adapter applies to protocol json"):
        open_target(TargetSpec("onnx", "m.onnx"), adapter=object())  # type: ignore[arg-type]
    with pytest.raises(BackmarkError, match="output applies to protocol v2"):
        open_target(TargetSpec("json", "http://127.0.0.1:1/"), output="logits")
    with pytest.raises(BackmarkError, match="not found"):
        open_target(TargetSpec("onnx", "/nonexistent/m.onnx"))
