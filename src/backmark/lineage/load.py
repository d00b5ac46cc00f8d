"""The suspect's weights from the files ``verify`` reads: a backmark checkpoint, TorchScript, ONNX.

The owner's model is always a backmark checkpoint: its architecture is what the test traces. A suspect
can be ``ckpt:PATH``, ``torchscript:PATH`` or ``onnx:PATH`` (a plain path: ``.onnx`` is ONNX, a
TorchScript archive is recognised by its ``constants.pkl``, anything else is a checkpoint). TorchScript
keeps the parameter names of the module it was made from. ONNX files written by ``torch.onnx.export``
(``backmark export`` included) fold batch norm into the convolutions and rename them, so their
convolution and linear weights are paired with the owner's layers in the order the graph runs them; a
folded convolution's rows are its units scaled by batch norm, which the cosine similarity of the matching
does not see (the exact p-value stays exact: it needs only that the matching treats units alike).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import nn

from backmark.errors import BackmarkError, first_line
from backmark.lineage.plan import Plan
from backmark.models import ModelInfo, load_checkpoint
from backmark.targets.exported import load_torchscript

FORMS = ("ckpt:PATH", "torchscript:PATH", "onnx:PATH")


def _form(spec: str) -> tuple[str, Path]:
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("ckpt", "torchscript", "onnx"):
        return kind, Path(rest)
    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        return "onnx", path
    try:
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("/constants.pkl") for name in archive.namelist()):
                return "torchscript", path
    except (OSError, zipfile.BadZipFile):
        pass  # load_checkpoint says what is wrong with it
    return "ckpt", path


def load_owner(path: str | Path) -> tuple[nn.Module, ModelInfo]:
    """The owner's model: a backmark checkpoint (its architecture is needed to trace the layers)."""
    kind, p = _form(str(path))
    if kind != "ckpt":
        raise BackmarkError(f"--owner must be a backmark checkpoint (its architecture is traced), not {kind}")
    return load_checkpoint(p)


def load_suspect(spec: str, *, plan: Plan) -> dict[str, torch.Tensor]:
    """The suspect's weights by the owner's parameter names (``plan`` names the layers an ONNX graph's
    weights are paired with)."""
    kind, path = _form(spec)
    if not path.is_file():
        raise BackmarkError(f"suspect model {path} not found")
    if kind == "ckpt":
        return dict(load_checkpoint(path)[0].state_dict())
    if kind == "torchscript":
        return dict(load_torchscript(path).state_dict())
    return _onnx_weights(path, plan)


def _onnx_weights(path: Path, plan: Plan) -> dict[str, torch.Tensor]:
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises its own types (DecodeError ...) for a damaged file
        raise BackmarkError(f"{path} is not a readable ONNX file ({first_line(exc)})") from None
    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    found = [
        init[node.input[1]]
        for node in graph.node
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and node.input[1] in init
    ]
    if len(found) != len(plan.layers):
        raise BackmarkError(
            f"{path}: its graph has {len(found)} convolution and linear (Gemm) weights, the owner's model "
            f"{len(plan.layers)}; the architectures differ"
        )
    weights = {}
    for name, w in zip(plan.layers, found, strict=True):
        weights[f"{name}.weight"] = w
    return weights
