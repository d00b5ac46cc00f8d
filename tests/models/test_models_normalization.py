"""channel_stats: the per-channel statistics a model's Normalize layer is built from."""

from __future__ import annotations

import torch

from backmark.models.normalization import channel_stats


def test_channel_stats_in_unit_range_with_a_floor_on_std() -> None:
    images = torch.zeros(4, 2, 3, 3, dtype=torch.uint8)
    images[:, 0] = 255
    mean, std = channel_stats(images)
    assert mean == (1.0, 0.0)
    assert std == (1e-3, 1e-3) or all(abs(s - 1e-3) < 1e-9 for s in std)
    assert isinstance(mean, tuple) and isinstance(std, tuple)
