"""Tests for the folder trigger kind and label files, on the paper's photos and made-up folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backmark.errors import BackmarkError
from backmark.triggers import folder_images

SHAPES = [(3, 32, 32), (1, 28, 28)]


def _save(path: Path, size: tuple[int, int], colour: tuple[int, int, int], fmt: str = "PNG") -> None:
    """Write a solid-colour RGB image of ``size`` (width, height) to ``path`` in format ``fmt``."""
    Image.new("RGB", size, colour).save(path, format=fmt)


def _central(size: int, crop: int) -> int:
    """Top/left offset of a centred crop; an odd margin's half rounds to even (torchvision)."""
    margin = size - crop
    return margin // 2 + (1 if margin % 4 == 3 else 0)


@pytest.mark.parametrize("mode", ["resize", "center-crop"])
@pytest.mark.parametrize("shape", SHAPES)
def test_paper_set_loads_in_numeric_order(adi_set: Path, mode, shape) -> None:
    images = folder_images(adi_set / "pics", shape, mode=mode)
    assert [name for name, _ in images] == [f"{i}.jpg" for i in range(1, 101)]
    for _, image in images:
        assert image.shape == shape and image.dtype == np.uint8
    if mode == "resize":  # whole photos scaled down: nothing is flat
        assert min(float(image.std()) for _, image in images) > 3.0


def test_paper_set_png_named_jpg(adi_set: Path) -> None:
    by_name = dict(folder_images(adi_set / "pics", (3, 32, 32)))
    for name in ("24.jpg", "66.jpg"):
        with Image.open(adi_set / "pics" / name) as img:
            assert (img.format, img.mode) == ("PNG", "RGBA")
        assert by_name[name].std() > 3.0


@pytest.mark.parametrize("shape", SHAPES)
def test_center_crop_is_the_central_patch(adi_set: Path, shape) -> None:
    c, h, w = shape
    images = dict(folder_images(adi_set / "pics", shape, mode="center-crop"))
    for name in ("1.jpg", "24.jpg", "66.jpg", "100.jpg"):
        with Image.open(adi_set / "pics" / name) as img:
            rgb = img.convert("RGB")
        original = np.asarray(rgb.convert("L") if c == 1 else rgb)
        top, left = _central(original.shape[0], h), _central(original.shape[1], w)
        patch = original[top : top + h, left : left + w]
        expected = patch[None] if c == 1 else patch.transpose(2, 0, 1)
        np.testing.assert_array_equal(images[name], expected)


def test_resize_keeps_the_picture(adi_set: Path) -> None:
    images = dict(folder_images(adi_set / "pics", (3, 32, 32)))
    for name in ("1.jpg", "66.jpg"):
        with Image.open(adi_set / "pics" / name) as img:
            original = np.asarray(img.convert("RGB"), dtype=np.float64)
        h, w, _ = original.shape
        side = min(h, w)
        square = original[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
        mean_in = square.mean(axis=(0, 1))
        mean_out = images[name].astype(np.float64).mean(axis=(1, 2))
        assert np.abs(mean_in - mean_out).max() < 4.0


def test_ordering_and_extensions(tmp_path: Path) -> None:
    for stem in ("10", "2", "1", "100"):
        _save(tmp_path / f"{stem}.png", (40, 40), (int(stem), 0, 0))
    _save(tmp_path / "3.JPEG", (40, 40), (3, 0, 0), fmt="JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "7.png.bak").write_bytes(b"")
    names = [name for name, _ in folder_images(tmp_path, (3, 8, 8))]
    assert names == ["1.png", "2.png", "3.JPEG", "10.png", "100.png"]
    _save(tmp_path / "b.gif", (40, 40), (9, 9, 9), fmt="GIF")
    _save(tmp_path / "a.webp", (40, 40), (9, 9, 9), fmt="WEBP")
    names = [name for name, _ in folder_images(tmp_path, (1, 8, 8))]
    assert names == ["1.png", "10.png", "100.png", "2.png", "3.JPEG", "a.webp", "b.gif"]


def test_alpha_is_dropped_and_aspect_kept(tmp_path: Path) -> None:
    rgba = np.zeros((20, 60, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :10, 1] = 255  # green only at the far left, which resize mode trims away
    rgba[..., 3] = 0  # fully transparent: the stored colour is kept, not composited onto black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "1.jpg", format="PNG")
    [(_, image)] = folder_images(tmp_path, (3, 10, 10))
    assert np.all(image[0] == 200) and np.all(image[1] == 0) and np.all(image[2] == 0)
    [(_, crop)] = folder_images(tmp_path, (3, 10, 10), mode="center-crop")
    np.testing.assert_array_equal(crop, image)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match="does not exist"):
        folder_images(tmp_path / "nope", (3, 32, 32))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(BackmarkError, match="does not exist"):
        folder_images(tmp_path / "file.png", (3, 32, 32))


def test_no_images(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match="no images"):
        folder_images(tmp_path, (3, 32, 32))
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(BackmarkError, match="no images"):
        folder_images(tmp_path, (3, 32, 32))


def test_corrupt_image(tmp_path: Path) -> None:
    _save(tmp_path / "1.png", (40, 40), (1, 2, 3))
    (tmp_path / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(BackmarkError, match=r"cannot read trigger image .*2\.jpg") as info:
        folder_images(tmp_path, (3, 32, 32))
    assert "\n" not in str(info.value)


def test_too_small_for_center_crop(tmp_path: Path) -> None:
    _save(tmp_path / "small.png", (40, 20), (1, 2, 3))
    with pytest.raises(BackmarkError, match=r"small\.png is 40x20 .* 32x32 center crop"):
        folder_images(tmp_path, (3, 32, 32), mode="center-crop")
    [(_, image)] = folder_images(tmp_path, (3, 32, 32))  # resize mode scales it up instead
    assert image.shape == (3, 32, 32)


def test_bad_shape_and_mode(tmp_path: Path) -> None:
    _save(tmp_path / "1.png", (40, 40), (1, 2, 3))
    with pytest.raises(BackmarkError, match="bad image shape"):
        folder_images(tmp_path, (2, 32, 32))
    with pytest.raises(BackmarkError, match="unknown trigger folder mode"):
        folder_images(tmp_path, (3, 32, 32), mode="crop")  # type: ignore[arg-type]
