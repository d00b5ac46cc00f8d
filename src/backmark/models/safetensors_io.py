"""Model weights as safetensors, the format model hubs share weights in, beside backmark's checkpoints.

A safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's dtype, shape
and byte range, and an optional ``__metadata__`` dict of strings) and the raw tensor bytes; it holds no
code, so reading one runs nothing. backmark writes what its checkpoint records into the metadata, every
value a string::

    format       "backmark-safetensors"       version   "1"
    arch         "cnn" or "MODULE:CALLABLE"   arch_args  JSON object (the normalisation included)
    input_shape  JSON [C, H, W]               num_classes  decimal integer
    meta         JSON object (training settings, accuracies, key id; never the key)
    sha256       hex SHA-256 over the tensors (names in sorted order, each its name, dtype, shape and
                 bytes), which the format itself does not check: a changed byte is refused on load

A file without ``format`` (weights from elsewhere, such as a hub's) loads with :func:`load_safetensors`
given the :class:`~backmark.models.ModelInfo` to build its model from (on the command line: ``--arch``,
``--arch-args`` and, where the key cannot tell it, ``--classes``); tensors that do not fit that
architecture are named in a one-line error (:func:`misfit_report`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backmark.atomic import write_bytes
from backmark.errors import BackmarkError, first_line
from backmark.infra.readonly import json_default
from backmark.models.info import ModelInfo, build

FORMAT = "backmark-safetensors"
VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


def looks_like(path: Path) -> bool:
    """Whether ``path`` starts as a safetensors file does (a length, then a JSON object), not a zip."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def has_metadata(path: Path) -> bool:
    """Whether the safetensors file ``path`` carries backmark's metadata (reads its header only)."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        (size,) = struct.unpack("<Q", head)
        if size > _MAX_HEADER:
            return False
        try:
            header = json.loads(f.read(size))
        except (ValueError, RecursionError):
            return False
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(metadata, dict) and metadata.get("format") == FORMAT


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in name order: each name, dtype, shape and C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.flatten().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def safetensors_bytes(model: nn.Module, info: Any) -> bytes:
    """The safetensors file of ``model``'s state dict with ``info`` (a ModelInfo) as metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "arch": info.arch,
        "arch_args": json.dumps(info.arch_args, default=json_default),
        "input_shape": json.dumps(list(info.input_shape)),
        "num_classes": str(info.num_classes),
        "meta": json.dumps(info.meta, default=json_default),
        "sha256": tensors_digest(tensors),
    }
    return save(tensors, metadata=metadata)


def save_safetensors(path: str | Path, model: nn.Module, info: Any, *, force: bool = False) -> Path:
    """Write ``model``'s weights and ``info`` atomically to ``path`` as safetensors (see the module doc)."""
    return write_bytes(path, safetensors_bytes(model, info), force=force)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load

    raw = path.read_bytes()
    bad = f"{path} is not a readable safetensors file"
    if len(raw) < 8:
        raise BackmarkError(f"{bad} (it has {len(raw)} bytes)")
    (size,) = struct.unpack("<Q", raw[:8])
    if size > min(_MAX_HEADER, len(raw) - 8):
        raise BackmarkError(f"{bad} (its header claims {size} bytes; the file is truncated or damaged)")
    try:
        header = json.loads(raw[8 : 8 + size])
        tensors = load(raw)
    except Exception as exc:  # SafetensorError, JSON and UTF-8 errors: all mean a damaged file
        raise BackmarkError(f"{bad} ({first_line(exc)})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return tensors, metadata if isinstance(metadata, dict) else {}


def load_safetensors(
    path: str | Path, *, info: Any = None, allow_code: bool = False
) -> tuple[nn.Module, Any]:
    """Rebuild the model of a safetensors file in eval mode: ``(model, ModelInfo)``.

    The architecture comes from the file's backmark metadata or, for weights from elsewhere, from
    ``info``; the user's own architecture is built only with ``allow_code``. A damaged file, a changed
    tensor or weights that do not fit the architecture raise a one-line BackmarkError.
    """
    path = Path(path)
    if not path.is_file():
        raise BackmarkError(f"model file {path} not found")
    tensors, metadata = _read(path)
    if info is None:
        if metadata.get("format") != FORMAT:
            raise BackmarkError(
                f"{path} is a safetensors file without backmark's metadata (arch, input_shape, "
                "num_classes): give its architecture (--arch NAME or MODULE:CALLABLE, and --arch-args, on "
                "the command line; info=ModelInfo(...) in Python), or write it with `backmark export "
                "--safetensors`"
            )
        if metadata.get("version") != VERSION:
            found = metadata.get("version")
            raise BackmarkError(f"{path} is backmark safetensors version {found}; expected {VERSION}")
        if metadata.get("sha256") != tensors_digest(tensors):
            raise BackmarkError(
                f"{path} is corrupt: its tensors do not match the SHA-256 in its metadata; restore the "
                "file from a copy or export the model again"
            )
        try:
            shape = tuple(int(v) for v in json.loads(metadata["input_shape"]))
            info = ModelInfo(
                arch=str(metadata["arch"]),
                arch_args=json.loads(metadata["arch_args"]),
                input_shape=(shape[0], shape[1], shape[2]),
                num_classes=int(metadata["num_classes"]),
                meta=json.loads(metadata.get("meta", "{}")),
            )
        except (KeyError, IndexError, TypeError, ValueError, RecursionError) as exc:
            raise BackmarkError(f"{path} has damaged backmark metadata: {first_line(exc)}") from None
    try:
        model = build(info, allow_code=allow_code)
    except BackmarkError as exc:
        raise BackmarkError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise BackmarkError(f"{path}: cannot build architecture {info.arch}: {first_line(exc)}") from None
    misfit = misfit_report(model.state_dict(), tensors)
    inputs = "x".join(map(str, info.input_shape))
    fits = f"{path} does not fit architecture {info.arch} ({info.num_classes} classes, {inputs} inputs)"
    if misfit:
        raise BackmarkError(f"{fits}: {misfit}")
    try:
        model.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise BackmarkError(f"{fits}: {first_line(exc)}") from None
    model.eval()
    return model, info


def _few(names: list[str], limit: int = 3) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def misfit_report(wanted: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps the tensors ``given`` (a file's) from loading as the state dict ``wanted`` (a model's), in
    one line: tensors missing, unexpected, or of another shape (the first few of each); None if they fit.

    Weights from elsewhere often differ only by a prefix (``module.`` from DistributedDataParallel,
    ``model.`` from a wrapper), which the line then points out.
    """
    missing = sorted(set(wanted) - set(given))
    extra = sorted(set(given) - set(wanted))
    reshaped = [k for k in sorted(set(wanted) & set(given)) if wanted[k].shape != given[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing from the file ({_few(missing)})")
    if extra:
        parts.append(f"{len(extra)} tensors the architecture lacks ({_few(extra)})")
    if reshaped:
        shown = [f"{k} is {list(given[k].shape)}, not {list(wanted[k].shape)}" for k in reshaped[:3]]
        parts.append("; ".join(shown) + (f" and {len(reshaped) - 3} more" if len(reshaped) > 3 else ""))
    prefixes = sorted({k.split(".", 1)[0] + "." for k in extra if "." in k and k.split(".", 1)[1] in wanted})
    if missing and prefixes:
        parts.append(f"the file's names carry the prefix {_few(prefixes)}: strip it")
    return "; ".join(parts) or None


__all__ = [
    "FORMAT",
    "VERSION",
    "has_metadata",
    "load_safetensors",
    "looks_like",
    "misfit_report",
    "save_safetensors",
    "tensors_digest",
]
