"""Figures for reports (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_bars(rows: Sequence[dict[str, Any]], path: Path, *, chance: float) -> Path:
    """Grouped bars of test accuracy and trigger match rate per model; a dashed line at chance."""
    plt = _pyplot()
    names = [r["name"] for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(1.9 * len(rows) + 2, 4), dpi=110)
    try:
        test = [100 * r["test_acc"] for r in rows]
        trig = [100 * r["match_rate"] for r in rows]
        b1 = ax.bar([x - 0.2 for x in xs], test, 0.4, label="test accuracy", color="#4C72B0")
        b2 = ax.bar([x + 0.2 for x in xs], trig, 0.4, label="trigger match rate", color="#DD8452")
        ax.bar_label(b1, fmt="%.1f", fontsize=8)
        ax.bar_label(b2, fmt="%.0f", fontsize=8)
        ax.axhline(100 * chance, ls="--", color="grey", lw=1, label=f"chance ({100 * chance:.0f}%)")
        ax.set_xticks(list(xs), names, fontsize=9)
        ax.set_ylabel("%")
        ax.set_ylim(0, 112)
        ax.legend(loc="upper center", ncols=3, fontsize=8, bbox_to_anchor=(0.5, -0.12))
        ax.set_title("Test accuracy and watermark evidence per model")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def training_curves(runs: dict[str, Sequence[dict[str, Any]]], path: Path) -> Path:
    """Test accuracy (solid) and trigger accuracy (dashed) per epoch for each training run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    try:
        for i, (name, history) in enumerate(runs.items()):
            color = f"C{i}"
            epochs = [h["epoch"] for h in history]
            ax.plot(epochs, [100 * h["test_acc"] for h in history], "-o", color=color, label=f"{name}: test")
            if history and history[0].get("trigger_acc") is not None:
                trig = [100 * h["trigger_acc"] for h in history]
                ax.plot(epochs, trig, "--s", color=color, label=f"{name}: triggers")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Accuracy during training")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
