"""KeyGen: a trigger set with uniformly random labels, and commitments to every item."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from backmark.errors import BackmarkError
from backmark.keys.commitments import OPENING_BYTES
from backmark.keys.labels import SEED_BYTES, item_seed, uniform_label
from backmark.keys.model import MarkingKey
from backmark.triggers import abstract_image, folder_images, noise_image

DEFAULT_SIZE = 100  # the paper's trigger set size


def parse_kind(kind: str) -> tuple[str, Path | None]:
    """Split a trigger-kind string: ``abstract``, ``noise`` or ``folder:DIR``."""
    if kind in ("abstract", "noise"):
        return kind, None
    if kind.startswith("folder:") and len(kind) > len("folder:"):
        return "folder", Path(kind[len("folder:") :])
    raise BackmarkError(f"unknown trigger kind {kind!r}; use abstract, noise or folder:DIR")


def generate_key(
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    size: int = DEFAULT_SIZE,
    kind: str = "abstract",
    crop: Literal["resize", "center-crop"] = "resize",
    seed: bytes | None = None,
) -> MarkingKey:
    """Make a marking key of ``size`` triggers for a ``num_classes``-way model on ``input_shape`` inputs.

    Every image (for generated kinds) and every label is a function of a 32-byte master seed, drawn from
    the operating system unless given, so the key can be regenerated and audited. Labels are uniform on
    the classes and independent of the images, which is what makes the verification test exact. For
    ``folder:DIR`` the images are the user's files (numeric name order), resized to the input shape, or
    with ``crop="center-crop"`` cut from the centre without resizing, as the paper's reference code did;
    the first ``size`` files are used. Commitment openings are fresh random values from the OS.
    """
    if num_classes < 2:
        raise BackmarkError(f"{{num_classes}} must be at least 2, got {num_classes}", params=["num_classes"])
    if size < 1:
        raise BackmarkError(f"{{size}} must be at least 1, got {size}", params=["size"])
    if len(input_shape) != 3 or input_shape[0] not in (1, 3) or min(input_shape[1:]) < 8:
        raise BackmarkError(f"input shape must be CxHxW with C 1 or 3 and H, W >= 8, got {input_shape}")
    master = secrets.token_bytes(SEED_BYTES) if seed is None else seed
    if len(master) != SEED_BYTES:
        raise BackmarkError(f"a key seed must be {SEED_BYTES} bytes, got {len(master)}")
    seeds = [item_seed(master, i) for i in range(size)]
    name, folder = parse_kind(kind)
    source: dict[str, object] = {"kind": name}
    if folder is not None:
        found = folder_images(folder, input_shape, mode=crop)
        if len(found) < size:
            raise BackmarkError(f"{folder} holds {len(found)} images but the key needs {size}")
        images = np.stack([img for _, img in found[:size]])
        source.update(folder=str(folder), crop=crop, files=[f for f, _ in found[:size]])
    else:
        make = abstract_image if name == "abstract" else noise_image
        images = np.stack([make(s, input_shape) for s in seeds])
    labels = np.array([uniform_label(s, num_classes) for s in seeds], dtype=np.int64)
    return MarkingKey(
        images=images,
        labels=labels,
        num_classes=num_classes,
        image_openings=tuple(secrets.token_bytes(OPENING_BYTES) for _ in range(size)),
        label_openings=tuple(secrets.token_bytes(OPENING_BYTES) for _ in range(size)),
        kind=name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        master_seed=master,
        source=source,
    )
