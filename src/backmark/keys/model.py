"""The marking key (secret) and the verification key (public) as in-memory objects."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from backmark.errors import BackmarkError
from backmark.keys import commitments as com

VK_FORMAT = "backmark-verification-key"
VK_VERSION = 1


@dataclass(frozen=True)
class VerificationKey:
    """The public half: 2n commitments plus metadata. It reveals no trigger image and no label.

    ``digest`` is SHA-256 over the canonical JSON of every other field; it is the value to register
    (with a timestamp) before the marked model is released.
    """

    num_classes: int
    input_shape: tuple[int, int, int]
    image_commitments: tuple[bytes, ...]
    label_commitments: tuple[bytes, ...]
    kind: str
    created: str
    algorithm: str = com.ALGORITHM

    @property
    def n(self) -> int:
        return len(self.image_commitments)

    def body(self) -> dict[str, Any]:
        """Every field but the digest, in the JSON form written to disk."""
        return {
            "format": VK_FORMAT,
            "version": VK_VERSION,
            "algorithm": self.algorithm,
            "n": self.n,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "kind": self.kind,
            "created": self.created,
            "image_commitments": [c.hex() for c in self.image_commitments],
            "label_commitments": [c.hex() for c in self.label_commitments],
        }

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.body(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(canonical).hexdigest()

    @property
    def key_id(self) -> str:
        """A short name for the key: the first 16 hex digits of the digest."""
        return self.digest[:16]


@dataclass(frozen=True)
class MarkingKey:
    """The secret half: trigger images, their labels and every commitment opening.

    ``images`` is uint8 (n, C, H, W) in pixel space; ``labels`` int64 (n,). ``master_seed`` regenerates
    generated images and all labels (None for keys whose labels were supplied by the user).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    image_openings: tuple[bytes, ...]
    label_openings: tuple[bytes, ...]
    kind: str
    created: str
    master_seed: bytes | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise BackmarkError(f"trigger images must be uint8 (n, C, H, W), got {self.images.shape}")
        if self.labels.shape != (n,) or len(self.image_openings) != n or len(self.label_openings) != n:
            raise BackmarkError("marking key is inconsistent: images, labels and openings differ in count")
        if n and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise BackmarkError(f"marking key has a label outside 0..{self.num_classes - 1}")

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def verification_key(self) -> VerificationKey:
        """Commit to every image and label with this key's openings."""
        return VerificationKey(
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            image_commitments=tuple(
                com.commit_image(img, r) for img, r in zip(self.images, self.image_openings, strict=True)
            ),
            label_commitments=tuple(
                com.commit_label(int(lab), self.num_classes, s)
                for lab, s in zip(self.labels, self.label_openings, strict=True)
            ),
            kind=self.kind,
            created=self.created,
        )

    def trigger_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Triggers as float32 (n, C, H, W) in [0, 1] and labels as int64 (n,)."""
        x = torch.from_numpy(self.images.astype(np.float32) / 255.0)
        return x, torch.from_numpy(self.labels.astype(np.int64))


def check_openings(mk: MarkingKey, vk: VerificationKey) -> None:
    """Check that every commitment in ``vk`` opens to the image and label in ``mk``.

    Raises BackmarkError naming the first bad index, so a tampered or mismatched key is refused.
    """
    if mk.n != vk.n or mk.num_classes != vk.num_classes or mk.input_shape != vk.input_shape:
        raise BackmarkError(
            f"marking key (n={mk.n}, C={mk.num_classes}, shape={mk.input_shape}) does not belong to "
            f"verification key (n={vk.n}, C={vk.num_classes}, shape={vk.input_shape}); pass the "
            "matching pair"
        )
    for i in range(mk.n):
        if not com.opens(
            vk.image_commitments[i],
            com.IMAGE_TAG,
            mk.image_openings[i],
            com.encode_image(mk.images[i]),
        ):
            raise BackmarkError(f"commitment to trigger image {i} does not open: keys do not match")
        payload = com.encode_label(int(mk.labels[i]), mk.num_classes)
        if not com.opens(vk.label_commitments[i], com.LABEL_TAG, mk.label_openings[i], payload):
            raise BackmarkError(f"commitment to trigger label {i} does not open: keys do not match")
