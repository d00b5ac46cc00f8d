"""A contact sheet of trigger images with their labels, for reports and for eyeballing a key."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backmark.errors import BackmarkError


def trigger_grid(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None,
    path: str | Path,
    *,
    columns: int = 10,
) -> Path:
    """Save the images as a PNG grid, each with its label text underneath; return the path.

    ``images`` are uint8 ``(C, H, W)`` arrays with C = 1 or 3 (sizes may differ); ``labels`` has
    one string per image, or is None for no captions. Rows hold ``columns`` images; each cell is
    about 1.1 inches (100 dpi) wide. Pixels are shown unsmoothed, greyscale on a 0..255 grey ramp.
    Parent directories are created. Raises ``BackmarkError`` for no images, a label count that
    differs from the image count, a badly shaped image or a path that cannot be written.
    """
    if not images:
        raise BackmarkError(f"no trigger images to draw into {path}; pass at least one image")
    if labels is not None and len(labels) != len(images):
        raise BackmarkError(
            f"{len(labels)} labels for {len(images)} trigger images in {path}; pass one per image"
        )
    if columns < 1:
        raise BackmarkError(f"trigger grid columns must be >= 1, got {columns}")
    panels = [_to_display(image, i) for i, image in enumerate(images)]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    caption = 0.25 if labels is not None else 0.0
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, (1.1 + caption) * rows), squeeze=False, dpi=100)
    try:
        for index, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if index >= len(panels):
                continue
            panel = panels[index]
            if panel.ndim == 2:
                ax.imshow(panel, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(panel, interpolation="nearest")
            if labels is not None:
                ax.text(
                    0.5, -0.04, str(labels[index]), transform=ax.transAxes,
                    ha="center", va="top", fontsize=8,
                )  # fmt: skip
        fig.tight_layout(pad=0.3)
        out = Path(path)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, format="png")
        except OSError as exc:
            raise BackmarkError(f"cannot write trigger grid {out} ({exc}); check the path") from exc
    finally:
        plt.close(fig)
    return out


def _to_display(image: np.ndarray, index: int) -> np.ndarray:
    """A (C, H, W) uint8 image as matplotlib wants it: (H, W) for greyscale, (H, W, 3) for RGB."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or arr.dtype != np.uint8:
        raise BackmarkError(
            f"trigger image {index} has shape {arr.shape} and dtype {arr.dtype}; "
            "expected uint8 (C, H, W) with C = 1 or 3"
        )
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
