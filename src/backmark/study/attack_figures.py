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

from backmark.study.measure import AttackOutcome
from backmark.study.plotting import (
    REMOVED_COLOR,
    TEST_COLOR,
    TRIGGER_COLOR,
    guides,
    pyplot,
    save,
)


def epoch_curves(outcomes: Sequence[AttackOutcome], path: Path, *, chance: float) -> Path | None:
    """One panel per attack that trained: test accuracy (solid) and trigger match rate (dashed) per epoch."""
    runs = [o for o in outcomes if len(o.history) > 1]
    if not runs:
        return None
    plt = pyplot()
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
            guides(ax, threshold=o.evidence.threshold / o.evidence.n, chance=chance)
            ax.set_title(o.label, fontsize=8)
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            ax.set_ylim(0, 102)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(runs) :]:
            ax.axis("off")
        axes.flat[0].set_ylabel("%")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncols=4, fontsize=8, bbox_to_anchor=(0.5, 0.0))
        fig.suptitle("Test accuracy and trigger match rate during each attack (black-box)", fontsize=10)
        return save(fig, path)
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    try:
        xs = [x for x, _ in points]
        ax.plot(
            xs, [100 * o.test_acc_after for _, o in points], "-o", color=TEST_COLOR, label="test accuracy"
        )
        ax.plot(
            xs,
            [100 * o.evidence.match_rate for _, o in points],
            "--s",
            color=TRIGGER_COLOR,
            label="trigger matches",
        )
        guides(ax, threshold=points[0][1].evidence.threshold / points[0][1].evidence.n, chance=chance)
        if option == "lr":
            ax.set_xscale("log")
        ax.set_xlabel(f"{attack}: {option}")
        ax.set_ylabel("%")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"{attack} against {option}", fontsize=10)
        return save(fig, path)
    finally:
        plt.close(fig)


def summary(outcomes: Sequence[AttackOutcome], path: Path, *, chance: float) -> Path:
    """Horizontal bars per attack: test accuracy after it and trigger match rate; removals in red."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(outcomes) + 1.6), dpi=100)
    try:
        ys = list(range(len(outcomes)))[::-1]
        ax.barh([y + 0.2 for y in ys], [100 * o.test_acc_after for o in outcomes], 0.4, color=TEST_COLOR)
        colors = [REMOVED_COLOR if o.removed else TRIGGER_COLOR for o in outcomes]
        ax.barh([y - 0.2 for y in ys], [100 * o.evidence.match_rate for o in outcomes], 0.4, color=colors)
        guides(
            ax,
            threshold=outcomes[0].evidence.threshold / outcomes[0].evidence.n if outcomes else None,
            chance=chance,
            vertical=True,
        )
        ax.set_yticks(ys, [o.label for o in outcomes], fontsize=7)
        ax.set_xlim(0, 102)
        ax.set_xlabel("%")
        ax.grid(axis="x", alpha=0.3)
        patch = plt.matplotlib.patches.Patch
        handles = [
            patch(color=TEST_COLOR, label="test accuracy after the attack"),
            patch(color=TRIGGER_COLOR, label="trigger matches (still verified, or too costly)"),
            patch(color=REMOVED_COLOR, label="trigger matches: watermark removed"),
            *ax.get_legend_handles_labels()[0],
        ]
        ax.legend(
            handles=handles,
            fontsize=7,
            ncols=2,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08 - 0.6 / (len(outcomes) + 2)),
        )
        ax.set_title("Every attack: accuracy kept and watermark evidence left", fontsize=10)
        return save(fig, path)
    finally:
        plt.close(fig)
