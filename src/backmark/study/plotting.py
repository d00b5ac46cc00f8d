"""What every backmark figure shares: the Agg backend, colours, the guide lines and a saver that never clips.

Used by the demo's figures (:mod:`backmark.study.demo_figures`) and the robustness report's
(:mod:`backmark.study.attack_figures`). matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEST_COLOR = "#4C72B0"  # test accuracy
TRIGGER_COLOR = "#DD8452"  # trigger match rate
REMOVED_COLOR = "#C44E52"  # a watermark removed by an attack
THRESHOLD_STYLE: dict[str, Any] = {"ls": ":", "color": "black", "lw": 1.2}
CHANCE_STYLE: dict[str, Any] = {"ls": (0, (6, 3)), "color": "grey", "lw": 1}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG; the bounding box grows to hold every title, label and legend."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()  # room between panels and for a suptitle
    fig.savefig(path, bbox_inches="tight", pad_inches=0.15)
    return path


def guides(ax: Any, *, threshold: float | None, chance: float, vertical: bool = False) -> None:
    """The decision threshold and chance (fractions in [0, 1]) as labelled lines on a % axis."""
    line = ax.axvline if vertical else ax.axhline
    if threshold is not None:
        line(100 * threshold, label=f"threshold to verify ({100 * threshold:.0f}%)", **THRESHOLD_STYLE)
    line(100 * chance, label=f"chance ({100 * chance:.0f}%)", **CHANCE_STYLE)
