"""Request and answer shapes of JSON inference APIs, described in a small file instead of Python.

backmark's own JSON contract (``--protocol json``) is::

    POST URL  {"images": [[[[0.0, 0.5, ...]]]]}     float (B, C, H, W) pixels in [0, 1], nested lists
    answer    {"labels": [3, 0, ...]}               one integer label per image, in order

Another API is described by an adapter file (``--adapter FILE``), JSON with these fields (all optional;
missing ones take the contract's values)::

    {"request": {"instances": "{{images}}"},  body template; the string "{{images}}" becomes the batch
     "layout": "NHWC",                        NCHW (default), NHWC, or FLAT (one vector per image)
     "dtype": "uint8",                        float32 (default, pixels in [0, 1]) or uint8 (0..255)
     "labels": "/predictions/*/class_id",     JSON pointer to one label per image, or instead
     "scores": "/predictions",                JSON pointer to one score list per image (argmax taken)
     "classes": ["T-shirt/top", "Trouser"]}   names the API answers with instead of numbers, in order

Pointers follow RFC 6901 (``/a/0/b``, ``~1`` for ``/``, ``~0`` for ``~``) plus one extension: a ``*``
segment maps the rest of the pointer over every element of a list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backmark.errors import BackmarkError
from backmark.targets.tensors import LAYOUTS, Layout, labels_from_output

PLACEHOLDER = "{{images}}"
_FIELDS = ("request", "layout", "dtype", "labels", "scores", "classes")


def resolve(document: Any, pointer: str) -> Any:
    """The value at JSON ``pointer`` in ``document``; ``*`` maps over a list. KeyError if absent."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    head, _, rest = pointer[1:].partition("/")
    token = head.replace("~1", "/").replace("~0", "~")
    tail = "/" + rest if _ else ""
    if token == "*" and isinstance(document, list):
        return [resolve(item, tail) for item in document]
    if isinstance(document, dict) and token in document:
        return resolve(document[token], tail)
    if isinstance(document, list) and token.isdigit() and int(token) < len(document):
        return resolve(document[int(token)], tail)
    raise KeyError(pointer)


def _fill(template: Any, images: list[Any]) -> Any:
    if template == PLACEHOLDER:
        return images
    if isinstance(template, dict):
        return {k: _fill(v, images) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, images) for v in template]
    return template


@dataclass(frozen=True)
class Adapter:
    """How to build a request body from a batch and read labels from the answer (see module doc)."""

    request: Any = field(default_factory=lambda: {"images": PLACEHOLDER})
    layout: Layout = "NCHW"
    dtype: str = "float32"
    labels: str | None = "/labels"
    scores: str | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if json.dumps(self.request).count(json.dumps(PLACEHOLDER)) != 1:
            raise BackmarkError(
                f'an adapter\'s "request" must contain the string "{PLACEHOLDER}" exactly once'
            )
        if self.layout not in LAYOUTS:
            raise BackmarkError(f"adapter layout {self.layout!r} unknown; choose one of {', '.join(LAYOUTS)}")
        if self.dtype not in ("float32", "uint8"):
            raise BackmarkError(f"adapter dtype {self.dtype!r} unknown; choose float32 or uint8")
        if (self.labels is None) == (self.scores is None):
            raise BackmarkError('an adapter needs exactly one of "labels" and "scores" (JSON pointers)')

    def body(self, batch: np.ndarray) -> Any:
        """The request body for ``batch``, already laid out and typed (see :func:`arrange`)."""
        return _fill(self.request, batch.tolist())

    def read(self, answer: Any, *, batch: int, what: str) -> torch.Tensor:
        """Int64 (batch,) labels from a parsed JSON answer; anything else is a BackmarkError."""
        pointer = self.labels if self.labels is not None else self.scores
        assert pointer is not None  # __post_init__ guarantees one of them
        try:
            value = resolve(answer, pointer)
        except KeyError:
            raise BackmarkError(
                f"{what} answered JSON without {pointer!r}: {json.dumps(answer)[:80]}"
            ) from None
        if not isinstance(value, list):
            raise BackmarkError(f"{what} answered a {type(value).__name__} at {pointer!r}, not a list")
        if self.classes is not None and self.labels is not None:
            index = {name: i for i, name in enumerate(self.classes)}
            unknown = [v for v in value if isinstance(v, str) and v not in index]
            if unknown:
                raise BackmarkError(f"{what} answered class {unknown[0]!r}, not one of the adapter's classes")
            value = [index[v] if isinstance(v, str) else v for v in value]
        try:
            array = np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise BackmarkError(f"{what} answered values at {pointer!r} that are not numbers") from None
        if self.labels is not None and array.ndim != 1:
            raise BackmarkError(f"{what} answered shape {list(array.shape)} at {pointer!r}; expected labels")
        return labels_from_output(array, batch=batch, what=what)


def load_adapter(path: str | Path) -> Adapter:
    """Read an adapter file; unknown fields and bad values are one-line BackmarkErrors."""
    path = Path(path).expanduser()
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BackmarkError(f"cannot read adapter file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BackmarkError(f"adapter file {path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BackmarkError(f"adapter file {path} is nested too deeply to be an adapter") from None
    if not isinstance(spec, dict):
        raise BackmarkError(f"adapter file {path} must hold a JSON object")
    unknown = sorted(set(spec) - set(_FIELDS))
    if unknown:
        raise BackmarkError(
            f"adapter file {path} has unknown field {unknown[0]!r}; fields: {', '.join(_FIELDS)}"
        )
    if "scores" in spec and "labels" not in spec:
        spec["labels"] = None
    if "classes" in spec:
        if not isinstance(spec["classes"], list) or not all(isinstance(c, str) for c in spec["classes"]):
            raise BackmarkError(f'adapter file {path}: "classes" must be a list of strings')
        spec["classes"] = tuple(spec["classes"])
    return Adapter(**spec)
