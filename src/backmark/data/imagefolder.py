"""A dataset from a directory tree of image files: ``DIR/{train,test}/<class>/<image>``.

Classes are the sorted sub-folder names of ``train``; ``test`` must have the same set. Files are
opened with Pillow whatever their extension says (real collections contain PNGs named ``.jpg``),
converted to RGB — or to single-channel L when every image is greyscale — and resized to one size
so they stack into one tensor.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backmark.data.dataset import ImageDataset
from backmark.data.registry import register_dataset
from backmark.errors import BackmarkError

_SIZE_SUFFIX = re.compile(r"^(?P<dir>.+)@(?P<size>\d+[xX]\d+)$")
EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
_HOWTO = "lay it out as DIR/train/<class>/*.png and DIR/test/<class>/*.png"


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    """Visible sub-folders of ``split_dir`` by name."""
    if not split_dir.is_dir():
        raise BackmarkError(f"imagefolder: {split_dir} is not a directory; {_HOWTO}")
    try:
        entries = list(split_dir.iterdir())
    except OSError as exc:
        raise BackmarkError(f"imagefolder: cannot list {split_dir}: {exc}; {_HOWTO}") from exc
    return {p.name: p for p in entries if p.is_dir() and not p.name.startswith(".")}


def _image_files(class_dir: Path) -> list[Path]:
    """Image files directly in ``class_dir`` (by extension, case-insensitive), sorted by name."""
    try:
        entries = list(class_dir.iterdir())
    except OSError as exc:
        raise BackmarkError(f"imagefolder: cannot list {class_dir}: {exc}; {_HOWTO}") from exc
    return sorted(
        p for p in entries if p.suffix.lower() in EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def _read_image(path: Path) -> tuple[Image.Image, bool]:
    """Decode ``path`` as RGB; also say whether its stored mode was greyscale."""
    try:
        with Image.open(path) as img:
            grey = img.mode in _GREY_MODES
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise BackmarkError(f"imagefolder: cannot read image {path}: {exc}; fix or delete the file") from exc
    return rgb, grey


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"32x32"``) into (height, width) in pixels, both positive."""
    h, sep, w = text.lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit() or int(h) <= 0 or int(w) <= 0:
        raise BackmarkError(f"imagefolder size {text!r} is not HxW, e.g. imagefolder:DIR@32x32")
    return int(h), int(w)


def load_imagefolder(directory: Path, size: tuple[int, int] | None = None) -> ImageDataset:
    """Load ``directory`` as an :class:`ImageDataset` named ``imagefolder:<folder name>``.

    ``size`` is (height, width) in pixels; when None, the first training image's size is used.
    Images are resized with bilinear filtering when their size differs. Output images are uint8
    [N, C, H, W] with C = 1 if all images are greyscale, else 3.
    """
    if not directory.is_dir():
        raise BackmarkError(f"imagefolder directory {directory} does not exist; {_HOWTO}")
    train_dirs = _class_dirs(directory / "train")
    test_dirs = _class_dirs(directory / "test")
    classes = tuple(sorted(train_dirs))
    if not classes:
        raise BackmarkError(f"imagefolder: {directory / 'train'} has no class folders; {_HOWTO}")
    if set(test_dirs) != set(classes):
        extra = sorted(set(test_dirs) - set(classes))
        lacking = sorted(set(classes) - set(test_dirs))
        raise BackmarkError(
            f"imagefolder: {directory / 'test'} classes differ from train (extra {extra}, "
            f"missing {lacking}); give test the same class folders as train"
        )

    splits: list[tuple[list[Image.Image], list[int]]] = []
    all_grey = True
    for dirs in (train_dirs, test_dirs):
        images: list[Image.Image] = []
        labels: list[int] = []
        for label, cls in enumerate(classes):
            files = _image_files(dirs[cls])
            if not files and dirs is train_dirs:
                raise BackmarkError(
                    f"imagefolder: {dirs[cls]} has no images ({', '.join(sorted(EXTENSIONS))})"
                    f"; add some or remove the folder"
                )
            for path in files:
                img, grey = _read_image(path)
                all_grey = all_grey and grey
                images.append(img)
                labels.append(label)
        splits.append((images, labels))
    if not splits[1][0]:
        raise BackmarkError(f"imagefolder: {directory / 'test'} has no images; {_HOWTO}")

    first = splits[0][0][0]
    height, width = size if size is not None else (first.height, first.width)
    channels = 1 if all_grey else 3
    tensors = [_stack(images, labels, (height, width), channels) for images, labels in splits]
    (train_x, train_y), (test_x, test_y) = tensors
    return ImageDataset(f"imagefolder:{directory.resolve().name}", train_x, train_y, test_x, test_y, classes)


def _stack(
    images: list[Image.Image], labels: list[int], size: tuple[int, int], channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB images -> uint8 [N, channels, H, W] at ``size`` (H, W); labels -> int64 [N]."""
    height, width = size
    out = np.empty((len(images), channels, height, width), dtype=np.uint8)
    for i, img in enumerate(images):
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)  # [H, W, 3]
        out[i] = arr[:, :, :1].transpose(2, 0, 1) if channels == 1 else arr.transpose(2, 0, 1)
    return torch.from_numpy(out), torch.tensor(labels, dtype=torch.int64)


@register_dataset(
    "imagefolder",
    forms=("imagefolder:DIR", "imagefolder:DIR@HxW"),
    description="image files in DIR/{train,test}/<class>/, resized to the first image's size or HxW",
    needs_dir="with DIR holding train/<class>/* and test/<class>/*",
)
def _imagefolder(directory: Path | None, *, download: bool, progress: bool) -> ImageDataset:
    assert directory is not None  # the registry asks for DIR (needs_dir)
    match = _SIZE_SUFFIX.match(str(directory))
    if match and not directory.is_dir():  # a folder whose name ends in @HxW is still a folder
        return load_imagefolder(Path(match["dir"]), parse_size(match["size"]))
    return load_imagefolder(directory)
