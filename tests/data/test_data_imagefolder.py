"""imagefolder:DIR datasets built from PNG / JPEG files written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backmark.data import load_dataset
from backmark.errors import BackmarkError


def _save(path: Path, img: Image.Image, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)


def _colour(value: int, size: tuple[int, int] = (8, 6)) -> Image.Image:
    """A solid RGB image of PIL size (width, height)."""
    return Image.new("RGB", size, (value, 255 - value, 7))


def make_tree(root: Path) -> None:
    """Two classes (cat, dog) in train and test; mixed formats, one PNG-with-alpha named .jpg."""
    _save(root / "train" / "cat" / "a.png", _colour(10), "PNG")
    _save(root / "train" / "cat" / "b.jpg", _colour(20, (16, 12)), "JPEG")
    rgba = Image.new("RGBA", (8, 6), (200, 100, 50, 128))
    _save(root / "train" / "dog" / "c.jpg", rgba, "PNG")  # really a PNG with alpha
    _save(root / "train" / "dog" / "notes.txt", _colour(0), "PNG")  # ignored: not an image name
    _save(root / "test" / "cat" / "d.bmp", _colour(30), "BMP")
    _save(root / "test" / "dog" / "e.webp", _colour(40), "WEBP")


def test_imagefolder_rgb(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.classes == ("cat", "dog")
    # Size of the first training image (train/cat/a.png): 8 wide, 6 high.
    assert ds.train_x.shape == (3, 3, 6, 8) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (2, 3, 6, 8)
    assert ds.train_y.tolist() == [0, 0, 1] and ds.test_y.tolist() == [0, 1]
    assert ds.train_x[0, :, 0, 0].tolist() == [10, 245, 7]
    assert ds.train_x[2, :, 0, 0].tolist() == [200, 100, 50]  # alpha dropped, colour kept


def test_imagefolder_explicit_size(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ds = load_dataset(f"imagefolder:{tmp_path}@4x5")
    assert ds.input_shape == (3, 4, 5)


def test_imagefolder_greyscale(tmp_path: Path) -> None:
    for split, cls, value in (("train", "a", 5), ("train", "b", 9), ("test", "a", 5)):
        _save(tmp_path / split / cls / "x.png", Image.new("L", (3, 3), value), "PNG")
    _save(tmp_path / "test" / "b" / "y.jpg", Image.new("L", (3, 3), 9), "JPEG")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.input_shape == (1, 3, 3)
    assert torch.equal(ds.train_x[1], torch.full((1, 3, 3), 9, dtype=torch.uint8))


def test_unreadable_image(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "test" / "cat" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(BackmarkError, match=r"cannot read image .*broken\.png"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_test_classes_must_match(tmp_path: Path) -> None:
    make_tree(tmp_path)
    _save(tmp_path / "test" / "bird" / "f.png", _colour(1), "PNG")
    with pytest.raises(BackmarkError, match=r"classes differ from train \(extra \['bird'\]"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_missing_dirs(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(BackmarkError, match=r"test is not a directory"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_bad_size_suffix(tmp_path: Path) -> None:
    make_tree(tmp_path)
    with pytest.raises(BackmarkError, match="not HxW"):
        load_dataset(f"imagefolder:{tmp_path}@0x5")


def test_pixels_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    _save(tmp_path / "train" / "k" / "p.png", Image.fromarray(pixels), "PNG")
    _save(tmp_path / "test" / "k" / "p.png", Image.fromarray(pixels), "PNG")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert np.array_equal(ds.train_x[0].numpy(), pixels.transpose(2, 0, 1))
