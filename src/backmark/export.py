"""Export a model to ONNX or TorchScript, and check that the file answers exactly as the model does.

``backmark export --model CKPT --onnx FILE`` (or ``--torchscript FILE``). Both formats take float
(B, C, H, W) pixels in [0, 1] (the normalisation travels inside the model) with any batch size, and give
(B, classes) logits. After writing, the file is loaded back through its target
(:class:`~backmark.targets.exported.OnnxTarget` / ``TorchScriptTarget``) and queried on seeded random
images beside the model: any label that differs is an error, so an export never silently changes what a
verification would see. Files are written atomically (:mod:`backmark.atomic`): a failed export or check
leaves nothing behind, and an existing file is replaced only with ``force``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from backmark.atomic import atomic_path, check_file
from backmark.errors import BackmarkError, first_line
from backmark.models.modes import evaluating
from backmark.targets import ModuleTarget, Target
from backmark.targets.exported import OnnxTarget, TorchScriptTarget

Format = Literal["onnx", "torchscript"]
ONNX_OPSET = 17  # supported by every onnxruntime since 1.13 (2022)
PROBE_IMAGES = 64  # seeded random images on which the export must give the model's labels


@dataclass(frozen=True)
class ExportResult:
    """What was written: the file, its format and size, and the check of its answers on probe images."""

    path: str
    format: Format
    bytes: int
    probe_images: int
    probe_agreement: float  # fraction of probe images labelled as the model labels them (always 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns that it is legacy on every call
        # dynamo=False: the TorchScript-based exporter needs only the `onnx` package, not onnxscript.
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream, still works
        traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
        traced.save(str(path))


def _reader(path: Path, fmt: Format) -> Target:
    return OnnxTarget(path) if fmt == "onnx" else TorchScriptTarget(path)


def export_model(
    model: nn.Module,
    path: str | Path,
    *,
    format: Format,
    input_shape: tuple[int, int, int],
    force: bool = False,
    seed: int = 0,
) -> ExportResult:
    """Write ``model`` (any module mapping (B, *input_shape) to logits) as ``format`` to ``path``.

    The model is exported in eval mode and left in the mode it was in. Raises BackmarkError if ``path``
    exists (unless ``force``), if the exporter fails, or if the file's labels differ from the model's on
    :data:`PROBE_IMAGES` seeded random images.
    """
    if format not in ("onnx", "torchscript"):
        raise BackmarkError(f"unknown export format {format!r}; choose onnx or torchscript")
    path = Path(path).expanduser()
    check_file(path, force=force)
    generator = torch.Generator().manual_seed(seed)
    probe = torch.rand((PROBE_IMAGES, *input_shape), generator=generator)
    with evaluating(model), atomic_path(path, force=force) as tmp:
        try:
            (_write_onnx if format == "onnx" else _write_torchscript)(model, probe[:2], tmp)
        except (RuntimeError, ValueError, TypeError, torch.onnx.errors.OnnxExporterError) as exc:
            text = str(exc).replace(str(tmp), str(path)).replace(tmp.name, path.name)
            line = first_line(text) or type(exc).__name__
            raise BackmarkError(f"could not export the model to {format}: {line}") from None
        expected = ModuleTarget(model).predict(probe)
        try:
            got = _reader(tmp, format).predict(probe)
        except BackmarkError as exc:  # name the user's file, not the temporary one
            raise BackmarkError(str(exc).replace(str(tmp), str(path))) from None
        agreement = float((got == expected).float().mean())
        if agreement < 1.0:
            raise BackmarkError(
                f"the {format} export labels {agreement:.1%} of {PROBE_IMAGES} probe images as the "
                "model does; it would not verify as the model does, so it was not written"
            )
    return ExportResult(
        path=str(path),
        format=format,
        bytes=path.stat().st_size,
        probe_images=PROBE_IMAGES,
        probe_agreement=agreement,
    )


__all__ = ["ONNX_OPSET", "PROBE_IMAGES", "ExportResult", "Format", "export_model"]
