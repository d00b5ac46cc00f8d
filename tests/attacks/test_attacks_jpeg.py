"""The torch JPEG round trip against Pillow's libjpeg on real-looking images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from backmark.attacks._jpeg import JpegCompression, dct_matrix, quality_table
from backmark.keys import generate_key


def _pillow(image: np.ndarray, quality: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) through Pillow's JPEG encoder and decoder."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer)).astype(np.float32)


def test_dct_is_orthonormal_and_tables_follow_the_ijg_scaling() -> None:
    d = dct_matrix()
    assert torch.allclose(d @ d.T, torch.eye(8), atol=1e-6)
    assert quality_table([[16] * 8] * 8, 50)[0, 0] == 16  # quality 50 is the base table
    assert quality_table([[16] * 8] * 8, 100).max() == 1
    assert quality_table([[99] * 8] * 8, 1).max() == 255  # clamped for baseline JPEG


@pytest.mark.parametrize(
    ("shape", "quality", "tolerance"),
    [((1, 28, 28), 95, 0.6), ((1, 28, 28), 50, 1.0), ((3, 32, 32), 95, 2.0)],
)
def test_matches_pillow_within_a_grey_level_or_two(
    shape: tuple[int, int, int], quality: int, tolerance: float
) -> None:
    key = generate_key(num_classes=10, input_shape=shape, size=12, seed=b"\x05" * 32)
    ours = JpegCompression(quality)(torch.from_numpy(key.images).float() / 255) * 255
    diffs, changes = [], []
    for image, mine in zip(key.images, ours, strict=True):
        hwc = image[0] if shape[0] == 1 else image.transpose(1, 2, 0)
        reference = _pillow(hwc, quality)
        reference = reference[None] if shape[0] == 1 else reference.transpose(2, 0, 1)
        diffs.append(np.abs(reference - mine.numpy()).mean())
        changes.append(np.abs(image.astype(np.float32) - reference).mean())
    assert max(diffs) < tolerance
    assert np.mean(diffs) < 0.5 * np.mean(changes)  # much closer to libjpeg's output than to the input
