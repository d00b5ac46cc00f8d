"""Which answers the response key alters, and to what: an HMAC-SHA256 of the image's exact pixels.

The MAC is computed over the image **as uint8 pixels after the server's quantisation**: the float image
the server receives (values in [0, 1]) is mapped to ``round(255 * x)`` clipped to 0..255, in C order,
prefixed by its shape. A UINT8 request and the same image sent as floats ``p / 255`` get the same MAC, and
so do floats that differ only below half a grey level: the mark cannot be dodged by re-encoding an image,
and the logged pixels are exactly what verification sends back (as ``p / 255``).

For an image ``x`` with digest ``m = HMAC(secret, "decide" | shape | pixels)``:

- it is **altered** when the first 8 bytes of ``m``, read as an integer ``u``, satisfy
  ``u < floor(rate * 2**64)``: probability ``rate`` up to 2**-64;
- its **altered label** is drawn from a second MAC stream, ``HMAC(secret, "label" | counter | m)``, by
  rejection sampling: 4-byte words ``v`` below the largest multiple of ``C - 1`` that fits are accepted,
  and ``j = v mod (C - 1)`` picks the j-th class other than the model's own answer ``y``
  (``j`` if ``j < y``, else ``j + 1``). So, whatever ``y`` is, the altered label is uniform among the
  ``C - 1`` other classes, with no modulo bias, and never equals ``y``.
- **logits stay consistent**: the served logit vector has its top entry (the model's answer) swapped with
  the altered class's, so the altered label is top-1 and the vector is the model's own values, permuted.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

import numpy as np
import torch

from backmark.errors import BackmarkError
from backmark.response.key import ResponseKey

_DECIDE = b"backmark/response/v1/decide\x00"
_LABEL = b"backmark/response/v1/label\x00"


def quantise(images: torch.Tensor) -> np.ndarray:
    """uint8 (B, C, H, W) pixels, ``round(255 * x)`` clipped, of float images in [0, 1]."""
    x = images.detach().to(torch.float64).cpu().numpy()
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def image_digest(pixels: np.ndarray) -> str:
    """Public SHA-256 (hex) of one uint8 (C, H, W) image and its shape: the query log's key."""
    return hashlib.sha256(
        struct.pack(">3I", *pixels.shape) + np.ascontiguousarray(pixels).tobytes()
    ).hexdigest()


@dataclass(frozen=True)
class Altered:
    """One altered answer: the image (uint8 C, H, W), its digest, the model's answer and the label given."""

    index: int
    pixels: np.ndarray
    digest: str
    served: int
    label: int


class ResponseMark:
    """Applies a :class:`ResponseKey` to a ``num_classes``-class model's answers."""

    def __init__(self, key: ResponseKey, *, num_classes: int) -> None:
        if num_classes < 3:
            raise BackmarkError(f"the response mark needs at least 3 classes, got {num_classes}")
        self.key = key
        self.num_classes = num_classes
        self._cut = (key.rate.numerator << 64) // key.rate.denominator  # floor(rate * 2**64)
        others = num_classes - 1
        self._accept = (2**32 // others) * others

    def _mac(self, pixels: np.ndarray) -> bytes:
        message = _DECIDE + struct.pack(">3I", *pixels.shape) + np.ascontiguousarray(pixels).tobytes()
        return hmac.new(self.key.secret, message, hashlib.sha256).digest()

    def altered_label(self, pixels: np.ndarray, served: int) -> int | None:
        """The label to give for uint8 (C, H, W) ``pixels`` the model answers ``served``; None: keep it."""
        mac = self._mac(pixels)
        if int.from_bytes(mac[:8], "big") >= self._cut:
            return None
        counter = 0
        while True:
            block = hmac.new(
                self.key.secret, _LABEL + struct.pack(">I", counter) + mac, hashlib.sha256
            ).digest()
            for start in range(0, 32, 4):
                v = int.from_bytes(block[start : start + 4], "big")
                if v < self._accept:
                    j = v % (self.num_classes - 1)
                    return j if j < served else j + 1
            counter += 1

    def apply(
        self, images: torch.Tensor, logits: torch.Tensor | None, labels: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, list[Altered]]:
        """The answers to serve for float (B, C, H, W) ``images``: (logits, labels, what was altered).

        ``labels`` (B,) are the model's answers, ``logits`` (B, K) its scores or None. Neither input is
        changed; altered rows of the logits have the top entry swapped with the altered class's.
        """
        pixels = quantise(images)
        labels = labels.clone()
        logits = None if logits is None else logits.clone()
        altered: list[Altered] = []
        for i, served in enumerate(labels.tolist()):
            if not 0 <= served < self.num_classes:
                raise BackmarkError(f"the model answered {served}, outside 0..{self.num_classes - 1}")
            label = self.altered_label(pixels[i], served)
            if label is None:
                continue
            labels[i] = label
            if logits is not None:
                top = int(logits[i].argmax())
                row = logits[i]
                row[top], row[label] = row[label].clone(), row[top].clone()
            altered.append(Altered(i, pixels[i], image_digest(pixels[i]), served, label))
        return logits, labels, altered
