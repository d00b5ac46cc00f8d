"""Exported models as targets: an ONNX file run with onnxruntime, a TorchScript file run with torch.jit.

Both load on construction (a missing or unreadable file is a one-line BackmarkError then, not at query
time) and answer labels only, like every target. They read the model's own input declaration, so a file
exported by someone else (NHWC, a fixed batch of 1, uint8 inputs) works as long as it takes the key's
image size. ``backmark export`` writes files these read back with identical answers.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backmark.errors import BackmarkError, first_line
from backmark.targets.tensors import InputPlan, batches, chunks, labels_from_output, plan_input

# onnxruntime's names for tensor element types, as numpy dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
}


def _existing(path: str | Path, kind: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackmarkError(f"{kind} file {path} not found")
    return path


class OnnxTarget:
    """An ONNX model file, run on the CPU with onnxruntime; the first output is read as scores or labels.

    ``batch_size`` bounds the images per run (a model that declares a fixed batch gets exactly that);
    ``threads`` sets onnxruntime's intra-op threads (None: its default, all cores).
    """

    def __init__(self, path: str | Path, *, batch_size: int = 256, threads: int | None = None) -> None:
        import onnxruntime as ort  # imported here: it takes a while, and only ONNX targets need it

        self.path = _existing(path, "ONNX")
        self.batch_size = batch_size
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: graph optimisation notes are not the user's business
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for every bad file
            raise BackmarkError(f"{self.path} is not a readable ONNX model ({first_line(exc)})") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise BackmarkError(f"ONNX model {self.path} takes {len(inputs)} inputs ({names}); expected one")
        self._input = inputs[0]
        self._output = self._session.get_outputs()[0].name
        dtype = _ORT_TYPES.get(self._input.type)
        if dtype is None:
            raise BackmarkError(
                f"ONNX model {self.path} takes {self._input.type} inputs; supported: {', '.join(_ORT_TYPES)}"
            )
        self._dtype = dtype
        self._plans: dict[tuple[int, ...], InputPlan] = {}

    def _plan(self, image_shape: tuple[int, int, int]) -> InputPlan:
        if image_shape not in self._plans:
            what = f"ONNX model {self.path.name} (input {self._input.name!r})"
            self._plans[image_shape] = plan_input(
                list(self._input.shape), image_shape, dtype=self._dtype, what=what
            )
        return self._plans[image_shape]

    def check_fits(self, *, input_shape: tuple[int, int, int], num_classes: int | None) -> None:
        """The graph's declared input against the key's images, its first output against the classes."""
        self._plan(input_shape)
        shape = list(self._session.get_outputs()[0].shape)
        declared = shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] >= 2 else None
        if num_classes is not None and declared is not None and declared != num_classes:
            raise BackmarkError(
                f"ONNX model {self.path.name} answers {shape[1]} class scores per image but the key has "
                f"{num_classes} classes"
            )

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        c, h, w = (int(v) for v in images.shape[1:])
        out: list[torch.Tensor] = []
        for batch, count in batches(images, self._plan((c, h, w)), self.batch_size):
            try:
                result: Any = self._session.run([self._output], {self._input.name: batch})[0]
            except Exception as exc:  # onnxruntime's own error types (bad shape, failed kernel)
                raise BackmarkError(f"ONNX model {self.path.name} failed to run: {first_line(exc)}") from None
            labels = labels_from_output(np.asarray(result)[: len(batch)], batch=len(batch), what="ONNX model")
            out.append(labels[:count])
        return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """The TorchScript file ``path`` on the CPU (``torch.jit.load`` runs no Python from the file, only
    TorchScript graphs); a one-line error if it cannot be read as one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module: torch.jit.ScriptModule = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError, OSError, AttributeError) as exc:
        raise BackmarkError(f"{path} is not a readable TorchScript file ({first_line(exc)})") from None
    return module


class TorchScriptTarget:
    """A TorchScript file (``torch.jit.save``), loaded on the CPU in eval mode; outputs read as scores.

    TorchScript is deprecated upstream in favour of ``torch.export``; it is supported because suspects
    still ship it. ``torch.jit.load`` runs no Python from the file, only TorchScript graphs.
    """

    def __init__(self, path: str | Path, *, batch_size: int = 256) -> None:
        self.path = _existing(path, "TorchScript")
        self.batch_size = batch_size
        self._module = load_torchscript(self.path)
        self._module.eval()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        with torch.inference_mode():
            for part in chunks(len(images), self.batch_size):
                batch = images[part].float()
                try:
                    result = self._module(batch)
                except RuntimeError as exc:
                    raise BackmarkError(
                        f"TorchScript model {self.path.name} failed on {list(batch.shape)} images: "
                        f"{first_line(exc)}"
                    ) from None
                if not isinstance(result, torch.Tensor):
                    raise BackmarkError(
                        f"TorchScript model {self.path.name} answered a {type(result).__name__}, not a tensor"
                    )
                out.append(labels_from_output(result.numpy(), batch=len(batch), what="TorchScript model"))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)
