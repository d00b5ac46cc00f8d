"""What every target outside PyTorch shares: laying images out as a model wants them, reading answers back.

Exported files and servers declare an input shape (ONNX graph inputs, Open Inference Protocol metadata).
:func:`plan_input` matches it against the key's (C, H, W) images and picks a layout: NCHW (PyTorch's),
NHWC (TensorFlow's) or one flat vector per image. :func:`labels_from_output` turns whatever came back
(logits, probabilities or labels) into int64 labels, and refuses anything that is not exactly one answer
per image: a partial or wrongly shaped answer must never be counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from backmark.errors import BackmarkError

Layout = Literal["NCHW", "NHWC", "FLAT"]
LAYOUTS: tuple[Layout, ...] = ("NCHW", "NHWC", "FLAT")
# Element types a target may take. Floats get pixels in [0, 1]; uint8 gets 0..255 (the key's own bytes).
DTYPES = ("float32", "float64", "float16", "uint8")

Dim = int | str | None  # a declared dimension: a size, or -1 / None / a symbolic name for "any"


@dataclass(frozen=True)
class InputPlan:
    """How to send a batch: ``layout``, numpy ``dtype`` name, and ``batch`` if the model fixes it."""

    layout: Layout
    dtype: str
    batch: int | None = None


def _fits(declared: Sequence[Dim], wanted: Sequence[int]) -> bool:
    return len(declared) == len(wanted) and all(
        not isinstance(d, int) or d < 0 or d == w for d, w in zip(declared, wanted, strict=True)
    )


def plan_input(
    shape: Sequence[Dim], image_shape: tuple[int, int, int], *, dtype: str, what: str
) -> InputPlan:
    """Pick the layout under which ``shape`` (batch dimension first) accepts (C, H, W) images.

    NCHW wins when several fit (a C == H == W image is ambiguous and PyTorch models are the norm here).
    Raises BackmarkError naming ``what`` when no layout fits or the element type is unsupported.
    """
    if dtype not in DTYPES:
        raise BackmarkError(f"{what} takes {dtype} inputs; backmark sends one of: {', '.join(DTYPES)}")
    c, h, w = image_shape
    shape = list(shape)
    batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
    rest = shape[1:]
    for layout, wanted in (("NCHW", (c, h, w)), ("NHWC", (h, w, c)), ("FLAT", (c * h * w,))):
        if _fits(rest, wanted):
            return InputPlan(layout=layout, dtype=dtype, batch=batch)  # type: ignore[arg-type]
    raise BackmarkError(
        f"{what} takes input shape {shape}, which fits none of NCHW [-1, {c}, {h}, {w}], NHWC "
        f"[-1, {h}, {w}, {c}] or flat [-1, {c * h * w}] for the key's {c}x{h}x{w} images"
    )


def arrange(images: torch.Tensor, plan: InputPlan) -> np.ndarray:
    """Float (B, C, H, W) images in [0, 1] as a C-contiguous array in ``plan``'s layout and type."""
    x = images.detach().cpu()
    if plan.layout == "NHWC":
        x = x.permute(0, 2, 3, 1)
    elif plan.layout == "FLAT":
        x = x.reshape(len(x), -1)
    if plan.dtype == "uint8":  # the key's images are uint8 / 255, so this gives back their exact bytes
        return np.ascontiguousarray(x.mul(255.0).round().clamp(0, 255).to(torch.uint8).numpy())
    return np.ascontiguousarray(x.numpy().astype(plan.dtype, copy=False))


def labels_from_output(output: np.ndarray, *, batch: int, what: str) -> torch.Tensor:
    """Int64 (batch,) labels from scores (batch, K) (argmax) or labels (batch,) / (batch, 1).

    Logits and probabilities give the same argmax, so either is accepted. Any other shape, a row count
    other than ``batch``, non-finite scores or non-integer labels raise BackmarkError: the whole batch is
    refused rather than partly counted.
    """
    out = np.asarray(output)
    if out.dtype == np.bool_ or not (np.issubdtype(out.dtype, np.number)):
        raise BackmarkError(f"{what} answered {out.dtype} values, not class scores or integer labels")
    if out.ndim == 0 or out.shape[0] != batch:
        raise BackmarkError(f"{what} answered shape {list(out.shape)} for a batch of {batch} images")
    integer = np.issubdtype(out.dtype, np.integer)
    if out.ndim == 2 and out.shape[1] == 1 and integer:
        out = out[:, 0]
    if out.ndim == 1:
        if not integer and not (np.all(np.isfinite(out)) and np.all(out == np.round(out))):
            raise BackmarkError(f"{what} answered one non-integer value per image, not class labels")
        return torch.from_numpy(out.astype(np.int64))
    if out.ndim == 2 and out.shape[1] >= 2:
        if not integer and not np.all(np.isfinite(out)):
            raise BackmarkError(f"{what} answered scores that are not finite (NaN or infinity)")
        return torch.from_numpy(out.argmax(axis=1).astype(np.int64))
    raise BackmarkError(
        f"{what} answered shape {list(out.shape)}; expected scores [{batch}, classes] or labels [{batch}]"
    )


def batches(images: torch.Tensor, plan: InputPlan, size: int) -> Iterator[tuple[np.ndarray, int]]:
    """``images`` in runs laid out by :func:`arrange`, each with its count of real images.

    A run holds ``plan.batch`` images when the model takes a fixed batch (the last run padded with copies
    of its last image: read only the first ``count`` answers), else at most ``size``.
    """
    for part in chunks(len(images), plan.batch or size):
        batch = arrange(images[part], plan)
        count = len(batch)
        if plan.batch is not None and count < plan.batch:
            batch = np.concatenate([batch, np.repeat(batch[-1:], plan.batch - count, axis=0)])
        yield batch, count


def chunks(total: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    if size < 1:
        raise BackmarkError(f"batch size must be at least 1, got {size}")
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]
