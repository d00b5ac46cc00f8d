"""``backmark lineage``: exit 0 derived, 1 not shown, 2 a one-line error; the JSON's fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHAPE, fit, tiny
from torch import nn

from backmark.cli.main import main
from backmark.export import export_model
from backmark.lineage import permute_units, trace_plan
from backmark.models import ModelInfo, save_checkpoint


def _save(path: Path, model: nn.Module, width: int = 8, hidden: int = 32) -> str:
    info = ModelInfo("cnn", {"width": width, "hidden": hidden}, SHAPE, 10, {})
    save_checkpoint(path, model, info)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, owner: nn.Module) -> dict[str, str]:
    root = tmp_path_factory.mktemp("lineage")
    plan = trace_plan(owner, input_shape=SHAPE)
    derived = fit(permute_units(owner, plan, seed=1), seed=5)
    out = {
        "owner": _save(root / "owner.pt", owner),
        "derived": _save(root / "derived.pt", derived),
        "other": _save(root / "other.pt", fit(tiny(9), seed=6)),
        "wide": _save(root / "wide.pt", tiny(3, width=8, hidden=48), hidden=48),
    }
    export_model(derived, root / "derived.ts", format="torchscript", input_shape=SHAPE)
    export_model(derived, root / "derived.onnx", format="onnx", input_shape=SHAPE)
    out["ts"], out["onnx"] = str(root / "derived.ts"), str(root / "derived.onnx")
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["lineage", *argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_exit_status_says_derived_or_not(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--owner", files["owner"], "--suspect", files["derived"])
    assert code == 0 and out.startswith("DERIVED") and "shared initialisation" in out
    code, out, _ = run(capsys, "--owner", files["owner"], "--suspect", files["other"])
    assert code == 1 and out.startswith("NOT SHOWN")
    code, out, _ = run(capsys, "--owner", files["owner"], "--suspect", files["wide"], "-q")
    assert code == 1 and out == ""
    code, out, _ = run(capsys, "--owner", files["owner"], "--suspect", f"torchscript:{files['ts']}", "-q")
    assert code == 0
    # ONNX: batch norm folded into the convolutions, weights paired by the order the graph runs them
    code, out, _ = run(
        capsys, "--owner", files["owner"], "--suspect", files["onnx"], "--test", "robust", "-q"
    )
    assert code == 0
    code, out, _ = run(capsys, "--owner", files["owner"], "--suspect", files["onnx"], "--test", "exact", "-q")
    assert code == 1  # the derived copy's units were permuted


def test_json_has_the_decision_the_layers_and_the_assumptions(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "--owner", files["owner"], "--suspect", files["derived"], "--json", "--alpha", "1e-9"
    )
    record = json.loads(out)
    assert code == 0 and record["verified"] is True and record["alpha"] == 1e-9
    for field in ("p_value", "log10_p_value", "exact_p", "robust_p", "margin", "test", "assumptions"):
        assert field in record
    layer = record["layers"][0]
    assert sorted(layer["matched"]) == list(range(8)) and "exact_log10_p" in layer and "robust_p" in layer
    assert set(record["assumptions"]) == {"null", "detects", "exact_p", "robust_p", "p_value"}


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("missing", "suspect model {} not found"),
        ("corrupt", "is not a readable backmark checkpoint"),
        ("alpha", "alpha must lie strictly between 0 and 1"),
        ("owner-ts", "--owner must be a backmark checkpoint"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    which: str, message: str, files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(Path(files["owner"]).read_bytes()[:500])
    argv = {
        "missing": ["--owner", files["owner"], "--suspect", str(tmp_path / "none.pt")],
        "corrupt": ["--owner", files["owner"], "--suspect", str(corrupt)],
        "alpha": ["--owner", files["owner"], "--suspect", files["other"], "--alpha", "2"],
        "owner-ts": ["--owner", f"torchscript:{files['ts']}", "--suspect", files["other"]],
    }[which]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("backmark: error: ") and err.count("\n") == 1
    assert message.format(tmp_path / "none.pt") in err
