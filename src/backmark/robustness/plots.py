"""Figures of a robustness report (matplotlib, Agg backend, PNG).

- :func:`epoch_curves`: test accuracy and trigger match rate per epoch of every training attack, one panel
  each (as the paper's fine-tuning figures), with the decision threshold and chance marked;
- :func:`sweep`: the same two against an attack option (pruning sparsity, bits, learning rate);
- :func:`summary`: every attack side by side, removals highlighted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backmark.robustness.evaluate import AttackOutcome

TEST_COLOR, TRIGGER_COLOR = "#4C72B0", "#DD8452"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _guides(ax: Any, threshold: float, chance: float) -> None:
    ax.axhline(100 * threshold, ls=":", color="black", lw=1, label="decision threshold")
    ax.axhline(100 * chance, ls="--", color="grey", lw=1, label="chance")


def epoch_curves(outcomes: Sequence[AttackOutcome], path: Path, *, chance: float) -> Path | None:
    """One panel per attack that trained: test accuracy (solid) and trigger match rate (dashed) per epoch."""
    runs = [o for o in outcomes if len(o.history) > 1]
    if not runs:
        return None
    plt = _pyplot()
    cols = min(4, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), dpi=100, squeeze=False)
    try:
        for ax, o in zip(axes.flat, runs, strict=False):
            epochs = [p.epoch for p in o.history]
            ax.plot(epochs, [100 * p.test_acc for p in o.history], "-", color=TEST_COLOR, label="test")
            ax.plot(
                epochs, [100 * p.match_rate for p in o.history], "--", color=TRIGGER_COLOR, label="triggers"
            )
            _guides(ax, o.threshold / o.n, chance)
            ax.set_title(o.label, fontsize=8)
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            ax.set_ylim(0, 102)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(runs) :]:
            ax.axis("off")
        axes.flat[0].set_ylabel("%")
        axes.flat[0].legend(fontsize=6, loc="lower left")
        fig.suptitle("Test accuracy and trigger match rate during each attack (black-box)", fontsize=10)
        return _save(fig, path)
    finally:
        plt.close(fig)


def sweep(
    outcomes: Sequence[AttackOutcome], attack: str, option: str, path: Path, *, chance: float
) -> Path | None:
    """Test accuracy and trigger match rate of ``attack`` against its ``option`` (at least 2 values)."""
    points = sorted(
        (float(o.params[option]), o)
        for o in outcomes
        if o.attack == attack and o.params.get(option) is not None
    )
    if len({x for x, _ in points}) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    try:
        xs = [x for x, _ in points]
        ax.plot(
            xs, [100 * o.test_acc_after for _, o in points], "-o", color=TEST_COLOR, label="test accuracy"
        )
        ax.plot(
            xs, [100 * o.match_rate for _, o in points], "--s", color=TRIGGER_COLOR, label="trigger matches"
        )
        _guides(ax, points[0][1].threshold / points[0][1].n, chance)
        if option == "lr":
            ax.set_xscale("log")
        ax.set_xlabel(f"{attack}: {option}")
        ax.set_ylabel("%")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"{attack} against {option}", fontsize=10)
        return _save(fig, path)
    finally:
        plt.close(fig)


def summary(outcomes: Sequence[AttackOutcome], path: Path, *, chance: float) -> Path:
    """Horizontal bars per attack: test accuracy after it and trigger match rate; removals in red."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(outcomes) + 1.6), dpi=100)
    try:
        ys = list(range(len(outcomes)))[::-1]
        ax.barh([y + 0.2 for y in ys], [100 * o.test_acc_after for o in outcomes], 0.4, color=TEST_COLOR)
        colors = ["#C44E52" if o.removed else TRIGGER_COLOR for o in outcomes]
        ax.barh([y - 0.2 for y in ys], [100 * o.match_rate for o in outcomes], 0.4, color=colors)
        if outcomes:
            ax.axvline(100 * outcomes[0].threshold / outcomes[0].n, ls=":", color="black", lw=1)
        ax.axvline(100 * chance, ls="--", color="grey", lw=1)
        ax.set_yticks(ys, [o.label for o in outcomes], fontsize=7)
        ax.set_xlim(0, 102)
        ax.set_xlabel("% (blue: test accuracy after; orange: trigger matches; red: watermark removed)")
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(
            "Every attack: accuracy kept and watermark evidence left (dotted: threshold)", fontsize=10
        )
        return _save(fig, path)
    finally:
        plt.close(fig)
