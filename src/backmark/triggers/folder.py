"""The ``folder`` trigger kind: photographs read from a directory.

This reproduces the paper's setup, whose trigger set is 100 abstract photographs of 480 to 1650
pixels a side. Two ways to bring them to the model's input size are offered:

- ``mode="resize"``: center-crop to the target aspect ratio (so nothing is distorted), then
  resize with LANCZOS; the network sees the whole picture, scaled down.
- ``mode="center-crop"``: take the central H x W patch *without* resizing, exactly as the authors'
  reference loader did (torchvision ``CenterCrop``; the offset is ``round((size - crop) / 2)``
  per axis, Python's round-half-to-even included). The network then sees only a small central patch
  of each photograph, which is often nearly flat. Faithful, but a different trigger set.

Files are opened with PIL whatever their extension says (two of the paper's ``.jpg`` files are
really PNG with an alpha channel). The alpha channel is dropped, not composited, so transparent
pixels keep their stored colour, as in the reference loader's ``convert("RGB")``; greyscale is
PIL's ITU-R 601-2 luma of that RGB image. Only the first frame of an animated GIF is used, and
EXIF orientation tags are ignored (as in the reference loader).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from backmark.errors import BackmarkError, first_line
from backmark.triggers._common import check_shape
from backmark.triggers.registry import register_folder_kind

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
"""File extensions (lower case) read as trigger images; other files in the folder are skipped."""
_MODES = ("resize", "center-crop")


def image_files(directory: Path) -> list[Path]:
    """The image files in ``directory``, in numeric order of their stems if all are integers.

    ``1.jpg, 2.jpg, ..., 10.jpg`` sort numerically (not ``1, 10, 100, 11, ...``); any other naming
    sorts by file name.
    """
    files = [p for p in directory.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if files and all(re.fullmatch(r"[0-9]+", p.stem) for p in files):
        return sorted(files, key=lambda p: (int(p.stem), p.name))
    return sorted(files, key=lambda p: p.name)


@register_folder_kind(
    "folder", description="your own images in DIR, numeric name order, resized or center-cropped"
)
def folder_images(
    directory: str | Path,
    shape: tuple[int, int, int],
    *,
    mode: Literal["resize", "center-crop"] = "resize",
) -> list[tuple[str, np.ndarray]]:
    """Read every image in ``directory`` as uint8 ``(C, H, W)``, see the module doc for ``mode``.

    Returns ``[(file name, image), ...]`` in the order of :func:`image_files`. Raises
    ``BackmarkError`` for a missing directory, a directory without images, an unreadable image
    (naming it), an image smaller than H x W in center-crop mode, a bad shape or a bad mode.
    """
    c, h, w = check_shape(shape)
    if mode not in _MODES:
        raise BackmarkError(f"unknown trigger folder mode {mode!r}; use 'resize' or 'center-crop'")
    folder = Path(directory)
    if not folder.is_dir():
        raise BackmarkError(f"trigger folder {folder} does not exist; check the path")
    files = image_files(folder)
    if not files:
        exts = " ".join(sorted(IMAGE_EXTENSIONS))
        raise BackmarkError(f"no images ({exts}) in trigger folder {folder}; add some or fix the path")
    return [(path.name, _load(path, (c, h, w), mode)) for path in files]


def _load(path: Path, shape: tuple[int, int, int], mode: str) -> np.ndarray:
    """Open, convert, crop or resize one image to uint8 ``shape`` (C, H, W)."""
    c, h, w = shape
    try:
        with Image.open(path) as opened:
            opened.load()
            img = opened.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = first_line(exc)
        raise BackmarkError(
            f"cannot read trigger image {path} ({reason}); replace or remove the file"
        ) from exc
    if c == 1:
        img = img.convert("L")
    sw, sh = img.size
    if mode == "center-crop":
        if sw < w or sh < h:
            raise BackmarkError(
                f"trigger image {path} is {sw}x{sh} pixels, smaller than the {w}x{h} center crop; "
                "use mode 'resize' or a larger image"
            )
        left, top = round((sw - w) / 2.0), round((sh - h) / 2.0)  # half to even
        img = img.crop((left, top, left + w, top + h))
    else:
        if sw * h > w * sh:  # wider than the target: trim left and right
            cw = sh * w / h
            box = ((sw - cw) / 2.0, 0.0, (sw + cw) / 2.0, float(sh))
        else:  # taller (or same aspect): trim top and bottom
            ch = sw * h / w
            box = (0.0, (sh - ch) / 2.0, float(sw), (sh + ch) / 2.0)
        img = img.resize((w, h), Image.Resampling.LANCZOS, box=box)
    pixels = np.asarray(img, dtype=np.uint8)
    if c == 1:
        return np.ascontiguousarray(pixels[None, :, :])
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))
