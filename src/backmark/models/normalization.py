"""The statistics every model's ``Normalize`` layer is built from: per-channel mean and std of the data."""

from __future__ import annotations

import torch

STATS_IMAGES = 20000  # the first images of the data that the statistics are computed over


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 (N, C, H, W) images, in [0, 1] units.

    Over the first :data:`STATS_IMAGES` images; a std below 1e-3 (a constant channel) is raised to 1e-3,
    so normalising never divides by zero.
    """
    sample = images[:STATS_IMAGES].float().div_(255.0)
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


__all__ = ["STATS_IMAGES", "channel_stats"]
