"""ONNX and TorchScript exports verify exactly as the checkpoint does; foreign exports are read too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from backmark.data import ImageDataset
from backmark.embed import TrainConfig, embed_from_scratch, train_clean
from backmark.errors import BackmarkError
from backmark.export import export_model
from backmark.keys import MarkingKey, generate_key
from backmark.models import create_model, load_checkpoint, save_checkpoint
from backmark.targets import ModuleTarget, OnnxTarget, TorchScriptTarget, check_target
from backmark.verify import verify


@pytest.fixture(scope="module")
def key30() -> MarkingKey:
    return generate_key(num_classes=10, input_shape=(1, 28, 28), size=30, seed=b"\x05" * 32)


@pytest.fixture(scope="module")
def small_data(fashion: ImageDataset) -> ImageDataset:
    return fashion.subset(train=3000, test=500)


@pytest.fixture(scope="module")
def checkpoints(
    tmp_path_factory: pytest.TempPathFactory, small_data: ImageDataset, key30: MarkingKey
) -> tuple[Path, Path]:
    """(marked, clean), trained once per session; tests/serve/conftest.py shares the same two files."""
    folder = tmp_path_factory.getbasetemp() / "trained-e3-k05"
    marked, clean = folder / "marked.pt", folder / "clean.pt"
    if not marked.exists():
        folder.mkdir(exist_ok=True)
        m = embed_from_scratch(
            small_data, key30, config=TrainConfig(epochs=3, triggers_per_batch=10), progress=False
        )
        save_checkpoint(marked, m.model, m.info)
        c = train_clean(small_data, config=TrainConfig(epochs=1), progress=False)
        save_checkpoint(clean, c.model, c.info)
    return marked, clean


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exports_verify_with_identical_results(
    fmt: str, checkpoints: tuple[Path, Path], key30: MarkingKey, small_data: ImageDataset, tmp_path: Path
) -> None:
    vk = key30.verification_key()
    images = small_data.test_x.float() / 255.0
    for path, marked in zip(checkpoints, (True, False), strict=True):
        model, info = load_checkpoint(path)
        out = tmp_path / f"{path.stem}.{fmt}"
        written = export_model(model, out, format=fmt, input_shape=info.input_shape)  # type: ignore[arg-type]
        assert written.probe_agreement == 1.0 and written.bytes == out.stat().st_size
        target = OnnxTarget(out, batch_size=64) if fmt == "onnx" else TorchScriptTarget(out, batch_size=64)
        local, exported = verify(model, key30, vk), verify(target, key30, vk)
        assert exported == local and local.verified == marked
        assert torch.equal(target.predict(images), ModuleTarget(model).predict(images))  # 500 test images


class Foreign(nn.Module):
    """An export as someone else would make it: NHWC uint8 pixels in, probabilities or labels out."""

    def __init__(self, model: nn.Module, *, labels: bool) -> None:
        super().__init__()
        self.model, self.labels = model, labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.model(x.permute(0, 3, 1, 2).float() / 255.0).softmax(dim=1)
        return scores.argmax(dim=1) if self.labels else scores


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter says it is legacy
@pytest.mark.parametrize("labels", [False, True])
def test_foreign_onnx_with_nhwc_uint8_and_a_fixed_batch(labels: bool, tmp_path: Path) -> None:
    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28)).eval()
    path = tmp_path / "foreign.onnx"
    example = torch.zeros(1, 28, 28, 1, dtype=torch.uint8)  # no dynamic axes: the batch is fixed at 1
    torch.onnx.export(Foreign(model, labels=labels), (example,), str(path), dynamo=False, opset_version=17)
    images = (torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 255).round() / 255
    assert torch.equal(OnnxTarget(path).predict(images), ModuleTarget(model).predict(images))


def test_an_onnx_file_is_checked_against_the_key_before_it_runs(tmp_path: Path) -> None:
    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28))
    export_model(model, tmp_path / "m.onnx", format="onnx", input_shape=(1, 28, 28))
    target = OnnxTarget(tmp_path / "m.onnx")
    check_target(target, input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(BackmarkError, match=r"takes input shape .* for the key's 3x32x32 images"):
        check_target(target, input_shape=(3, 32, 32), num_classes=10)
    with pytest.raises(BackmarkError, match="answers 10 class scores per image but the key has 100 classes"):
        check_target(target, input_shape=(1, 28, 28), num_classes=100)


def test_export_refuses_to_overwrite_and_restores_the_mode(tmp_path: Path) -> None:
    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28)).train()
    path = tmp_path / "m.onnx"
    export_model(model, path, format="onnx", input_shape=(1, 28, 28))
    assert model.training and not list(tmp_path.glob(".*"))  # no temporary file left
    with pytest.raises(BackmarkError, match="already exists; pass force=True"):
        export_model(model, path, format="onnx", input_shape=(1, 28, 28))
    export_model(model, path, format="onnx", input_shape=(1, 28, 28), force=True)
    with pytest.raises(BackmarkError, match="unknown export format"):
        export_model(model, tmp_path / "m.x", format="tflite", input_shape=(1, 28, 28))  # type: ignore[arg-type]


def test_export_errors_name_the_given_path_not_a_temporary_file(tmp_path: Path) -> None:
    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BackmarkError) as info:
        export_model(model, tmp_path / "afile" / "random.bin", format="onnx", input_shape=(1, 28, 28))
    assert str(info.value) == (
        f"cannot write {tmp_path / 'afile' / 'random.bin'}: {tmp_path / 'afile'} is a file, not a folder; "
        "choose another path"
    )
    with pytest.raises(BackmarkError, match=r"^cannot write /proc/x\.onnx: [^;]+; ") as info:
        export_model(model, "/proc/x.onnx", format="onnx", input_shape=(1, 28, 28))
    assert "tmp" not in str(info.value) and "\n" not in str(info.value)


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(BackmarkError, match="is not a readable ONNX model"):
        OnnxTarget(junk)
    with pytest.raises(BackmarkError, match="is not a readable TorchScript file"):
        TorchScriptTarget(junk)
    with pytest.raises(BackmarkError, match=r"TorchScript file .* not found"):
        TorchScriptTarget(tmp_path / "missing.ts")
    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28))
    export_model(model, tmp_path / "m.ts", format="torchscript", input_shape=(1, 28, 28))
    with pytest.raises(BackmarkError, match="failed on"):
        TorchScriptTarget(tmp_path / "m.ts").predict(torch.zeros(2, 3, 8, 8))
