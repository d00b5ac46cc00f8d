"""The one learning-rate schedule implementation: a multiplier of the peak rate at each step."""

from __future__ import annotations

import math
from typing import Literal, get_args

Schedule = Literal["constant", "step", "cosine", "onecycle"]
SCHEDULES: tuple[Schedule, ...] = get_args(Schedule)

WARMUP = 0.15  # onecycle: share of the steps spent warming up linearly


def lr_factor(schedule: Schedule, step: int, total: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total`` steps.

    constant: 1; step: divided by 10 at half and again at three quarters of the run; cosine: cosine
    decay to 0; onecycle: linear warm-up over the first 15% of steps (at least one), then cosine decay
    to 0 at ``total``.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        progress = step / max(total, 1)
        return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01
    warm = max(1, int(WARMUP * total)) if schedule == "onecycle" else 0
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
