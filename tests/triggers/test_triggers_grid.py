"""Tests for trigger_grid, the labelled contact sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backmark.errors import BackmarkError
from backmark.triggers import abstract_image, noise_image, trigger_grid


def _images(n: int) -> list[np.ndarray]:
    return [abstract_image(bytes([i]) * 32, (3, 32, 32)) for i in range(n)]


def test_grid_writes_png(tmp_path: Path) -> None:
    images = [*_images(12), abstract_image(b"grey", (1, 28, 28)), noise_image(b"n", (3, 16, 24))]
    out = trigger_grid(images, [f"label {i}" for i in range(14)], tmp_path / "sub" / "grid.png")
    assert out == tmp_path / "sub" / "grid.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        width, height = img.size
        assert width > height > 100  # 10 columns, 2 rows
        assert np.asarray(img.convert("L")).std() > 10.0


def test_grid_without_labels(tmp_path: Path) -> None:
    out = trigger_grid(_images(3), None, str(tmp_path / "grid.png"), columns=2)
    with Image.open(out) as img:
        assert img.format == "PNG"


def test_grid_errors(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match="no trigger images"):
        trigger_grid([], None, tmp_path / "g.png")
    with pytest.raises(BackmarkError, match="2 labels for 3 trigger images"):
        trigger_grid(_images(3), ["a", "b"], tmp_path / "g.png")
    with pytest.raises(BackmarkError, match=r"trigger image 1 has shape \(32, 32, 3\)"):
        trigger_grid([_images(1)[0], np.zeros((32, 32, 3), np.uint8)], None, tmp_path / "g.png")
    with pytest.raises(BackmarkError, match="columns must be >= 1"):
        trigger_grid(_images(1), None, tmp_path / "g.png", columns=0)
    (tmp_path / "blocker").write_text("a file, not a directory")
    with pytest.raises(BackmarkError, match="cannot write trigger grid"):
        trigger_grid(_images(1), None, tmp_path / "blocker" / "g.png")
    assert not (tmp_path / "g.png").exists()
