"""Checkpoints: a state dict plus everything needed to rebuild the model, loadable with weights_only.

The file is ``torch.save`` of a plain dict::

    {"format": "backmark-checkpoint", "version": 1,
     "arch": "cnn", "arch_args": "<JSON>", "input_shape": [C, H, W], "num_classes": 10,
     "meta": "<JSON: training settings, accuracies, dataset, key id...>", "state_dict": {...}}

No module is ever pickled, and ``torch.load(weights_only=True)`` reads it. The marking key is never stored
in a checkpoint. It is written atomically (:mod:`backmark.atomic`) and, like every backmark output, never
over an existing file unless ``force``. ``torch.save`` writes a zip archive with a CRC-32 per record, which
``torch.load`` does not check, so :func:`load_checkpoint` checks them first: a changed byte in the weights
is refused, not loaded.

A model of the user's own architecture (``arch`` ``MODULE:CALLABLE``, :mod:`backmark.models.custom`) is
rebuilt by importing that code, so :func:`load_checkpoint` does it only with ``allow_code=True``.
The same model can be written as safetensors (:mod:`backmark.models.safetensors_io`); :func:`load_checkpoint`
reads either, telling them apart by their first bytes.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
import zlib
from pathlib import Path

import torch
from torch import nn

from backmark.atomic import write_bytes
from backmark.errors import BackmarkError, first_line
from backmark.infra.readonly import json_default
from backmark.models.info import ModelInfo, build

FORMAT = "backmark-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, model: nn.Module, info: ModelInfo, *, force: bool = False) -> Path:
    """Write ``model``'s weights and ``info`` atomically to ``path``; an existing file only with ``force``."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": info.arch,
        "arch_args": json.dumps(info.arch_args, default=json_default),
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "meta": json.dumps(info.meta, default=json_default),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    # torch.save names the archive's records after the file it writes to; a buffer gives them the
    # neutral prefix "archive/" instead of a temporary file's name
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes(path, buffer.getvalue(), force=force)


# What reading a damaged archive raises, from zipfile and from torch.load (IndexError: a damaged pickle).
_READ_ERRORS = (
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    OSError,
    NotImplementedError,
    IndexError,
    KeyError,
    zlib.error,
)


def _check_archive(path: Path) -> None:
    """Refuse a file that is not a zip archive or whose records fail their CRC-32 (torch.load skips it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            # torch's reader takes a record flagged as a folder (MS-DOS attribute 0x10) as empty and
            # hands back uninitialised memory as its tensor, without an error
            folders = [i.filename for i in archive.infolist() if i.is_dir() or i.external_attr & 0x10]
            bad = folders[0] if folders else archive.testzip()
    except _READ_ERRORS as exc:
        raise BackmarkError(f"{path} is not a readable backmark checkpoint ({first_line(exc)})") from None
    if bad is not None:
        record = bad.split("/", 1)[-1]  # "<archive name>/data/14": the archive name says nothing
        raise BackmarkError(
            f"checkpoint {path} is corrupt: its record {record} fails its integrity check; "
            "restore the file from a copy or train the model again"
        )


def load_checkpoint(
    path: str | Path, *, allow_code: bool = False, info: ModelInfo | None = None
) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the model of a checkpoint (or a safetensors file) in eval mode.

    Bad files raise a one-line BackmarkError; a model of the user's own architecture is rebuilt only
    with ``allow_code`` (see :func:`build`). ``info`` is the architecture of a safetensors file without
    backmark's metadata (bare weights, as hubs share them); a file that records its own is refused with
    it, so that two descriptions of one model never disagree silently.
    """
    path = Path(path)
    if not path.is_file():
        raise BackmarkError(f"model checkpoint {path} not found; train one with `backmark train`")
    from backmark.models import safetensors_io

    if safetensors_io.looks_like(path):
        if info is not None and safetensors_io.has_metadata(path):
            raise BackmarkError(
                f"{path} records its own architecture (backmark's metadata); {{info}} is for bare weights",
                params=["info"],
            )
        return safetensors_io.load_safetensors(path, info=info, allow_code=allow_code)
    if info is not None:
        raise BackmarkError(
            f"{path} is a backmark checkpoint, which records its own architecture; {{info}} is for a "
            "safetensors file of bare weights",
            params=["info"],
        )
    _check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise BackmarkError(f"{path} is not a readable backmark checkpoint ({first_line(exc)})") from None
        raise BackmarkError(
            f"{path} is not a backmark checkpoint: it holds pickled Python objects (a whole module?), "
            "which backmark does not load because loading them can run code; save the weights with "
            "backmark.models.save_checkpoint"
        ) from None
    except _READ_ERRORS as exc:
        raise BackmarkError(f"{path} is not a readable backmark checkpoint ({first_line(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BackmarkError(f"{path} is not a backmark checkpoint (use export tools for other formats)")
    if payload.get("version") != VERSION:
        raise BackmarkError(f"{path} is checkpoint version {payload.get('version')}; expected {VERSION}")
    try:
        shape = tuple(int(v) for v in payload["input_shape"])
        info = ModelInfo(
            arch=str(payload["arch"]),
            arch_args=json.loads(payload["arch_args"]),
            input_shape=(shape[0], shape[1], shape[2]),
            num_classes=int(payload["num_classes"]),
            meta=json.loads(payload["meta"]),
        )
        model = build(info, allow_code=allow_code)
        model.load_state_dict(payload["state_dict"])
    except BackmarkError as exc:  # an unknown architecture or option: name the file too
        raise BackmarkError(f"checkpoint {path}: {exc}") from None
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise BackmarkError(
            f"checkpoint {path} is damaged or does not fit its architecture: {first_line(exc)}"
        ) from None
    model.eval()
    return model, info
