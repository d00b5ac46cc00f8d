"""The demo's figures (matplotlib, Agg backend, PNG): accuracy and evidence per model, training curves,
and each key's evidence on the owner's and the thief's model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from backmark.study.plotting import TEST_COLOR, TRIGGER_COLOR, guides, pyplot, save


def _evidence_axes(
    ax: Any,
    records: Sequence[Mapping[str, Any]],
    chance: float,
    ticks: Sequence[float],
    names: Sequence[str],
    *,
    ylabel: str,
    legend_below: float = 0.12,
) -> None:
    """The frame both evidence charts share: the threshold line (where every record needs the same
    rate), chance, the groups' names at ``ticks``, a % axis with room above 100 for the bar labels, and
    the legend ``legend_below`` (a fraction of the axes' height) under the plot."""
    thresholds = {r["threshold"] / r["n"] for r in records}
    guides(ax, threshold=thresholds.pop() if len(thresholds) == 1 else None, chance=chance)
    ax.set_xticks(ticks, names, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 112)
    ax.legend(loc="upper center", ncols=4, fontsize=8, bbox_to_anchor=(0.5, -legend_below))


def accuracy_bars(rows: Sequence[Mapping[str, Any]], path: Path, *, chance: float) -> Path:
    """Test accuracy and trigger match rate per model, with the threshold, chance and which verified.

    Each row needs ``name``, ``test_acc``, ``match_rate``, ``threshold``, ``n`` and ``verified``.
    """
    plt = pyplot()
    xs = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(1.9 * len(rows) + 2.5, 4.2), dpi=110)
    try:
        test = [100 * r["test_acc"] for r in rows]
        trig = [100 * r["match_rate"] for r in rows]
        b1 = ax.bar([x - 0.2 for x in xs], test, 0.4, label="test accuracy", color=TEST_COLOR)
        b2 = ax.bar([x + 0.2 for x in xs], trig, 0.4, label="trigger match rate", color=TRIGGER_COLOR)
        ax.bar_label(b1, fmt="%.1f", fontsize=8)
        ax.bar_label(
            b2,
            labels=[f"{t:.0f}{' ✓' if r['verified'] else ''}" for t, r in zip(trig, rows, strict=True)],
            fontsize=8,
        )
        names = [f"{r['name']}\n{'VERIFIED' if r['verified'] else 'not verified'}" for r in rows]
        _evidence_axes(ax, rows, chance, xs, names, ylabel="%", legend_below=0.16)
        ax.set_title("Test accuracy and watermark evidence per model (✓: verified)")
        return save(fig, path)
    finally:
        plt.close(fig)


def training_curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    path: Path,
    *,
    starts: Mapping[str, tuple[int, float, float | None]] | None = None,
) -> Path:
    """Test accuracy (left) and trigger match rate (right) per epoch of each training run.

    ``runs`` maps a name to its per-epoch records (``epoch``, ``test_acc``, ``trigger_acc``). ``starts``
    gives runs that continue another model (PreTrained) their starting point: the epoch count already
    behind them and the test and trigger accuracy they started from, so they are drawn after it.
    """
    plt = pyplot()
    starts = starts or {}
    markers = "osD^vP*X"
    styles = ["-", (0, (5, 2)), "-.", ":"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110, sharex=True)
    try:
        for i, (name, history) in enumerate(runs.items()):
            offset, start_test, start_trig = starts.get(name, (0, None, None))
            epochs = [offset + int(h["epoch"]) for h in history]
            test = [100 * h["test_acc"] for h in history]
            trig = [None if h.get("trigger_acc") is None else 100 * h["trigger_acc"] for h in history]
            if start_test is not None:
                epochs, test = [offset, *epochs], [100 * start_test, *test]
                trig = [None if start_trig is None else 100 * start_trig, *trig]
            style = {"color": f"C{i}", "marker": markers[i % len(markers)], "ls": styles[i % len(styles)]}
            label = name + (f" (continues from epoch {offset})" if offset else "")
            left.plot(epochs, test, label=label, **style)
            if any(t is not None for t in trig):
                points = [(e, t) for e, t in zip(epochs, trig, strict=True) if t is not None]
                right.plot([e for e, _ in points], [t for _, t in points], label=label, **style)
        left.set_title("Test accuracy")
        right.set_title("Trigger match rate (marked runs)")
        for ax in (left, right):
            ax.set_xlabel("epoch")
            ax.set_ylabel("%")
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        right.set_ylim(0, 102)
        return save(fig, path)
    finally:
        plt.close(fig)


def evidence_bars(
    cells: Sequence[Mapping[str, Any]],
    path: Path,
    *,
    chance: float,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Each key's trigger match rate on each model: the owner's and the thief's key, side by side.

    Each cell needs ``key``, ``model``, ``match_rate``, ``threshold``, ``n`` and ``verified``; the
    models are the groups on the x axis, in the order they first appear, named by ``labels`` if given.
    """
    plt = pyplot()
    models = list(dict.fromkeys(str(c["model"]) for c in cells))
    keys = list(dict.fromkeys(str(c["key"]) for c in cells))
    width = 0.8 / max(1, len(keys))
    fig, ax = plt.subplots(figsize=(2.4 * len(models) + 3, 4.2), dpi=110)
    try:
        for i, key in enumerate(keys):
            mine = {str(c["model"]): c for c in cells if c["key"] == key}
            xs = [m + (i - (len(keys) - 1) / 2) * width for m in range(len(models))]
            rates = [100 * mine[m]["match_rate"] for m in models]
            color = TRIGGER_COLOR if i == 0 else f"C{i + 3}"
            bars = ax.bar(xs, rates, width, label=f"{key}'s key", color=color)
            marks = [" ✓" if mine[m]["verified"] else "" for m in models]
            ax.bar_label(bars, labels=[f"{r:.0f}{v}" for r, v in zip(rates, marks, strict=True)], fontsize=8)
        names = [(labels or {}).get(m, m) for m in models]
        _evidence_axes(ax, cells, chance, range(len(models)), names, ylabel="trigger match rate (%)")
        ax.set_title("Each key's evidence on each model (✓: verified)")
        return save(fig, path)
    finally:
        plt.close(fig)
