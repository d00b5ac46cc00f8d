"""What the model server accepts: its limits, and the exact checks of a request's images and tokens.

:class:`ServeLimits` and :func:`body_limit` size every bound from the model's input shape and the
largest batch; :func:`images_from` turns a request's pixels into a tensor only if they are exactly
numbers of the declared shape and type; :func:`fits_a_batch` refuses, before parsing, a body with more
JSON lists or values than such a batch needs; :func:`tokens_from_env` reads the bearer tokens of
``serve --auth-env``. Everything refused is a :class:`BadRequest` with its HTTP status.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backmark.errors import BackmarkError

MAX_BATCH = 1024  # images per request, by default
BYTES_PER_VALUE = 32  # JSON text of one pixel: "0.0039215688593685627, " is 23 characters
_SLACK = 64 * 2**10  # field names, brackets of a flat tensor, an id, parameters
INPUT_TYPES: dict[str, type[np.generic]] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "UINT8": np.uint8,
}


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the model server (the module doc of :mod:`backmark.serve.app`)."""

    max_batch: int = MAX_BATCH  # images per request
    workers: int = 2  # requests parsed and run at once (more wait for a free worker)
    body_budget_batches: int = 4  # bodies of the largest size held in memory at once, in all
    log_quota: int = 100_000  # query-log rows one client (a token, or all anonymous callers) may add

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= 65536:
            raise BackmarkError(
                f"{{max_batch}} must be 1 to 65536, got {self.max_batch}", params=["max_batch"]
            )
        if self.log_quota < 0:
            raise BackmarkError(
                f"{{log_quota}} must not be negative, got {self.log_quota}", params=["log_quota"]
            )
        if self.workers < 1 or self.body_budget_batches < 1:
            raise BackmarkError("workers and body_budget_batches must be at least 1")


def body_limit(input_shape: tuple[int, ...], max_batch: int = MAX_BATCH) -> int:
    """The largest body accepted: ``max_batch`` images of ``input_shape`` as JSON numbers, and slack."""
    return max_batch * math.prod(input_shape) * BYTES_PER_VALUE + _SLACK


class BadRequest(Exception):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def images_from(
    data: Any, shape: list[int], dtype: type[np.generic], image_shape: tuple[int, ...], max_batch: int
) -> torch.Tensor:
    """Float32 (B, C, H, W) in [0, 1] from flat or nested ``data`` declared as ``shape``.

    Only numbers are taken (no strings, no booleans); floats must be finite in the declared type (1e39
    is infinity in FP32), UINT8 values integers in 0..255.
    """
    if len(shape) != 4 or tuple(shape[1:]) != image_shape or not 1 <= shape[0] <= max_batch:
        raise BadRequest(
            f"input shape must be [B, {', '.join(map(str, image_shape))}] with 1 <= B <= {max_batch}"
        )
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise BadRequest(
            "input data must be a flat or nested list of numbers of the declared shape"
        ) from None
    if raw.dtype.kind not in "iuf" or raw.size != math.prod(shape):
        raise BadRequest(f"input data must be {math.prod(shape)} numbers for the declared shape {shape}")
    if raw.ndim > 1 and list(raw.shape) != shape:
        raise BadRequest(f"input data of shape {list(raw.shape)} do not fit the declared shape {shape}")
    if dtype is np.uint8:
        if raw.dtype.kind == "f" and not np.all(raw == np.floor(raw)):
            raise BadRequest("UINT8 input data must be integers")
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise BadRequest("UINT8 input data must be in 0..255")
    with np.errstate(over="ignore", invalid="ignore"):
        array = raw.astype(dtype)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise BadRequest(f"input data must be finite numbers that fit {np.dtype(dtype).name}")
    x = torch.from_numpy(array.reshape(shape).astype(np.float32))
    return x / 255.0 if dtype is np.uint8 else x


def fits_a_batch(body: bytes, input_shape: tuple[int, ...], max_batch: int) -> None:
    """Refuse, before parsing, a body with more JSON containers or values than ``max_batch`` images need.

    Parsing builds one Python object per value and per list: a body of ``[],`` repeated is cheap to
    send and costs the server far more memory than its size, so it is counted first (in C, fast).
    """
    c, h, _ = input_shape
    lists = max_batch * (1 + c + c * h) + 1024  # nested (B, C, H, W) lists, and a little more
    values = max_batch * math.prod(input_shape) + lists + 1024
    if body.count(b"[") + body.count(b"{") > lists or body.count(b",") > values:
        raise BadRequest(f"the request holds more values or lists than a batch of {max_batch} images needs")


def tokens_from_env(variable: str) -> dict[str, str]:
    """The bearer tokens in environment variable ``variable`` (separated by commas or white space),
    each mapped to the name it is logged under (``token:`` and 16 hex digits of its SHA-256)."""
    tokens = [t for t in re.split(r"[\s,]+", os.environ.get(variable, "")) if t]
    if not tokens:
        raise BackmarkError(
            f"environment variable {variable} (named by {{auth_env}}) is not set or holds no token",
            params=["auth_env"],
        )
    short = [t for t in tokens if len(t) < 16]
    if short:
        raise BackmarkError("{auth_env}: a token must have at least 16 characters", params=["auth_env"])
    return {t: token_client(t) for t in tokens}


def token_client(token: str) -> str:
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
