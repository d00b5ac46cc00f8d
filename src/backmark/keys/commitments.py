"""Hash commitments to trigger images and labels (SPEC section 2).

``Com(value; r) = SHA-256(len(tag) || tag || r || encode(value))`` with a fresh 32-byte opening ``r``.
SHA-256 makes the commitment binding (opening it to another value means finding a collision) and the
256-bit random opening makes it hiding (the digest reveals nothing about a value drawn from a small set,
such as a label out of 10 classes). The domain tags keep an image commitment from ever being read as a
label commitment and leave room for later versions.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import numpy as np

OPENING_BYTES = 32
IMAGE_TAG = b"backmark/v1/commit/image"
LABEL_TAG = b"backmark/v1/commit/label"
ALGORITHM = "sha256-tagged-v1"


def encode_image(image: np.ndarray) -> bytes:
    """Canonical bytes of a uint8 (C, H, W) image: dtype tag, big-endian shape, then C-order pixels."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 (C, H, W) image, got {image.dtype} {image.shape}")
    channels, height, width = image.shape
    return b"u8" + struct.pack(">III", channels, height, width) + np.ascontiguousarray(image).tobytes()


def encode_label(label: int, num_classes: int) -> bytes:
    """Canonical bytes of a label: the label and the class count, both big-endian uint32."""
    if not 0 <= label < num_classes:
        raise ValueError(f"label {label} is outside 0..{num_classes - 1}")
    return struct.pack(">II", label, num_classes)


def commit(tag: bytes, opening: bytes, payload: bytes) -> bytes:
    """The 32-byte commitment to ``payload`` under ``opening``."""
    if len(opening) != OPENING_BYTES:
        raise ValueError(f"an opening must be {OPENING_BYTES} bytes, got {len(opening)}")
    return hashlib.sha256(bytes([len(tag)]) + tag + opening + payload).digest()


def commit_image(image: np.ndarray, opening: bytes) -> bytes:
    return commit(IMAGE_TAG, opening, encode_image(image))


def commit_label(label: int, num_classes: int, opening: bytes) -> bytes:
    return commit(LABEL_TAG, opening, encode_label(label, num_classes))


def opens(commitment: bytes, tag: bytes, opening: bytes, payload: bytes) -> bool:
    """True if ``commitment`` opens to ``payload`` with ``opening`` (constant-time comparison)."""
    return hmac.compare_digest(commitment, commit(tag, opening, payload))
