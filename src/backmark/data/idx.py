"""Reader for the IDX format used by MNIST and Fashion-MNIST, plain or gzip-compressed.

Format (all integers big-endian): two zero bytes, a type byte (0x08 = unsigned byte), a byte with
the number of dimensions, one uint32 per dimension, then the row-major payload. Images are
``0x00000803`` with dims (N, rows, cols); labels are ``0x00000801`` with dims (N,).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from backmark.errors import BackmarkError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# The four files of an IDX dataset, as (train images, train labels, test images, test labels).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def read_payload(path: Path) -> bytes:
    """Return the raw IDX bytes of ``path``, gunzipping it when its name ends in ``.gz``."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise BackmarkError(f"cannot read {path}: {exc}; the file is missing or corrupt, replace it") from exc


def parse_idx(data: bytes, magic: int, source: Path) -> np.ndarray:
    """Parse IDX bytes whose header must carry ``magic``; return a uint8 array of the given dims.

    ``source`` only names the file in error messages. Checks the magic number (which also fixes
    the number of dims) and that the payload has exactly prod(dims) bytes, so a truncated or
    padded file is an error, not a silent partial read.
    """
    hint = "re-download or replace the file"
    if len(data) < 4:
        raise BackmarkError(f"{source} is too short to be an IDX file ({len(data)} bytes); {hint}")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise BackmarkError(
            f"{source} has IDX magic 0x{found:08x}, expected 0x{magic:08x}; "
            f"it is not the right IDX file, {hint}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BackmarkError(f"{source} has a truncated IDX header; {hint}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header
    if actual != expected:
        raise BackmarkError(
            f"{source} has {actual} payload bytes but its header {list(dims)} needs {expected} "
            f"(truncated or corrupt); {hint}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_file(directory: Path, base: str) -> Path | None:
    """Return ``directory/base`` or ``directory/base.gz`` (plain preferred), or None if neither."""
    for candidate in (directory / base, directory / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_idx_files(directory: Path) -> list[str]:
    """Names from :data:`IDX_FILES` that ``directory`` has in neither plain nor ``.gz`` form."""
    return [base for base in IDX_FILES if find_idx_file(directory, base) is None]


def load_idx_split(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split: images uint8 [N, 1, H, W] and labels int64 [N].

    Checks that the counts agree and that every label is below ``num_classes``.
    """
    images = parse_idx(read_payload(images_path), IMAGES_MAGIC, images_path)
    labels = parse_idx(read_payload(labels_path), LABELS_MAGIC, labels_path)
    if images.shape[0] != labels.shape[0]:
        raise BackmarkError(
            f"{labels_path} has {labels.shape[0]} labels but {images_path} has "
            f"{images.shape[0]} images; the two files do not belong together, replace them"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise BackmarkError(
            f"{labels_path} has label {int(labels.max())}, but the dataset has {num_classes} "
            f"classes; the file is corrupt or from another dataset, replace it"
        )
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def load_idx_dir(
    directory: Path, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load all four IDX files from ``directory``: (train_x, train_y, test_x, test_y).

    Shapes: uint8 [N, 1, H, W], int64 [N], uint8 [M, 1, H, W], int64 [M]. The caller must have
    checked that the files exist (see :func:`missing_idx_files`).
    """
    paths = [find_idx_file(directory, base) for base in IDX_FILES]
    found = [p for p in paths if p is not None]
    if len(found) != len(IDX_FILES):
        missing = ", ".join(missing_idx_files(directory))
        raise BackmarkError(f"{directory} lacks {missing} (plain or .gz); add the missing files")
    train_x, train_y = load_idx_split(found[0], found[1], num_classes)
    test_x, test_y = load_idx_split(found[2], found[3], num_classes)
    return train_x, train_y, test_x, test_y
