"""Robustness reports: ``report.json`` (every number), ``report.md`` (tables and verdicts) and figures.

A report folder is written whole or not at all (:func:`backmark.atomic.atomic_folder`).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from backmark.atomic import atomic_folder
from backmark.constants import VERSION
from backmark.study import attack_figures as plots
from backmark.study.measure import MAX_ACC_DROP, AttackOutcome, Baseline

SWEEPS = (("prune", "sparsity"), ("quantize", "bits"), ("ft-large-lr", "lr"), ("jpeg", "quality"))
WHAT = "an attack report"


def report_file(name: str) -> bool:
    """Whether ``name`` is a file of a report folder (``force`` replaces a folder holding only those)."""
    return name in ("report.json", "report.md") or name.endswith(".png")


def machine_info() -> dict[str, Any]:
    """Where a measurement ran: CPU, thread count and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "backmark": VERSION,
    }


@dataclass(frozen=True)
class AttackReport:
    """A robustness report: settings, the unattacked model, one outcome per attack, where it ran.

    ``report.json`` is :meth:`to_dict`: ``meta``'s entries (model, key_id, data, seed ...) at the top
    level beside the fixed ones, and one flat entry per attack.
    """

    backmark: str
    created: str
    alpha: float
    max_acc_drop: float
    meta: Mapping[str, Any]  # read-only
    baseline: Baseline
    outcomes: tuple[AttackOutcome, ...]
    machine: Mapping[str, Any]  # read-only
    figures: tuple[str, ...] = ()  # file names beside report.json

    def to_dict(self) -> dict[str, Any]:
        return {
            "backmark": self.backmark,
            "created": self.created,
            "alpha": self.alpha,
            "max_acc_drop": self.max_acc_drop,
            **self.meta,
            "baseline": self.baseline.to_dict(),
            "entries": [o.to_dict() for o in self.outcomes],
            "machine": dict(self.machine),
            "figures": list(self.figures),
        }


def build_report(
    baseline: Baseline, outcomes: Sequence[AttackOutcome], *, alpha: float, **meta: Any
) -> AttackReport:
    """The report of ``outcomes`` (before its figures are drawn): settings in ``meta``."""
    return AttackReport(
        backmark=VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        alpha=alpha,
        max_acc_drop=MAX_ACC_DROP,
        meta=MappingProxyType(dict(meta)),
        baseline=baseline,
        outcomes=tuple(outcomes),
        machine=MappingProxyType(machine_info()),
    )


def p_text(value: float, log10: float) -> str:
    return f"{value:.2g}" if value > 0 else f"1e{log10:.0f}"


def _piece_p(o: AttackOutcome, name: str) -> str:
    """The p-value of piece ``name`` of ``o``'s claim, "-" where the trial did not ask for it or it does
    not apply (lineage: another architecture; contrast: a new task)."""
    if o.claim is None:
        return "-"
    piece = next((p for p in o.claim.pieces if p.name == name), None)
    if piece is None:
        return "n/a"
    text = p_text(piece.p_value, piece.log10_p)
    return f"**{text}**" if piece.verified else text


def attack_table(outcomes: Sequence[AttackOutcome]) -> list[str]:
    """Markdown rows: accuracy before and after, every piece of evidence, verdicts and time, per attack.

    The labels and label-free p-values come from the same top-1 answers, and the trigger mark is verified
    when either is at alpha / 2. Lineage (weights) and contrast (answers on probes) p-values appear where
    the study asked for them; "ownership shown" is the claim from every piece at the same family-wise
    alpha (each piece at alpha / k; a bold p-value passed its level).
    """
    extra = any(o.claim is not None for o in outcomes)
    head = (
        "| attack | access | test acc before -> after | trigger matches | labels p | label-free p "
        "| mark verified | removed |"
    )
    rule = "|---|---|---|---|---|---|---|---|"
    if extra:
        head += " lineage p | contrast p | ownership shown |"
        rule += "---|---|---|"
    lines = [head + " time |", rule + "---|"]
    for o in outcomes:
        after = f"{o.test_acc_after:.2%}" + (" (new task)" if o.task != "original" else "")
        drop = "" if o.task != "original" else f" ({-100 * o.acc_drop:+.1f})"
        e, f = o.evidence, o.label_free
        free = "-" if f is None else p_text(f.p_value, f.log10_p_value)
        row = (
            f"| {o.label} | {o.access} | {o.test_acc_before:.2%} -> {after}{drop} | {e.matches}/{e.n} "
            f"| {p_text(e.p_value, e.log10_p_value)} | {free} | {'yes' if o.verified else 'no'} "
            f"| {'**yes**' if o.removed else 'no'} |"
        )
        if extra:
            shown = "yes" if o.shown else "**no**"
            row += f" {_piece_p(o, 'lineage')} | {_piece_p(o, 'contrast')} | {shown} |"
        lines.append(row + f" {o.seconds:.1f} s |")
    return lines


def swapped_table(outcomes: Sequence[AttackOutcome]) -> list[str]:
    """The reference code's figure for attacks that replace the output layer, beside the black-box one."""
    rows = [o for o in outcomes if o.head_swapped is not None]
    if not rows:
        return []
    lines = [
        "Attacks that re-initialise or replace the output layer, measured the way the paper's reference code "
        "did it: with the ORIGINAL output layer swapped back into the attacked model. That needs the "
        "suspect's weights, so it is **not black-box verification**; only the black-box column is what a "
        "verifier querying the suspect would see.",
        "",
        "| attack | black-box matches (verified) | original output layer swapped back: matches (verified) |",
        "|---|---|---|",
    ]
    for o in rows:
        s = o.head_swapped
        assert s is not None
        lines.append(
            f"| {o.label} | {o.evidence.matches}/{o.evidence.n} ({'yes' if o.verified else 'no'}) "
            f"| {s.matches}/{s.n} ({'yes' if s.verified else 'no'}; not black-box) |"
        )
    return lines


def verdicts(outcomes: Sequence[AttackOutcome], *, alpha: float, baseline: Baseline) -> list[str]:
    """Plain sentences: which attacks removed the watermark, at what cost, and which did not."""
    if not baseline.verified:
        return [
            f"- **The model was not verified before any attack** ({baseline.evidence.matches}/"
            f"{baseline.evidence.n} matches, threshold {baseline.evidence.threshold}), so there was no "
            "watermark to remove; the rows below describe the attacks' cost only."
        ]
    removed = [o for o in outcomes if o.removed]
    costly = [o for o in outcomes if not o.verified and not o.removed]
    kept = [o for o in outcomes if o.verified]

    def cost(o: AttackOutcome) -> str:
        if o.task != "original":
            return f"{o.label} (new task, {o.test_acc_after:.1%} accuracy on it)"
        return f"{o.label} ({-100 * o.acc_drop:+.1f} points of test accuracy)"

    lines = []
    if removed:
        lines.append(
            f"- **Removed the watermark** (not verified at alpha = {alpha:g}, at most "
            f"{100 * MAX_ACC_DROP:.0f} points of accuracy lost): " + "; ".join(cost(o) for o in removed) + "."
        )
    else:
        lines.append("- **No attack removed the watermark** within the 5-point accuracy budget.")
    if costly:
        lines.append(
            "- Brought the evidence below the threshold, but only by losing more than "
            f"{100 * MAX_ACC_DROP:.0f} points (not a removal): " + "; ".join(cost(o) for o in costly) + "."
        )
    if kept:
        lines.append("- Left the watermark verified: " + ", ".join(o.label for o in kept) + ".")
    extraction = [o for o in outcomes if o.attack == "extract"]
    if extraction:
        lines.append(
            f"- Model extraction from top-1 labels alone {extraction_verdict(extraction)}: "
            + "; ".join(
                f"{o.label}: {o.evidence.matches}/{o.evidence.n} matches, {-100 * o.acc_drop:+.1f} points"
                for o in extraction
            )
            + "."
        )
    return lines


def extraction_verdict(runs: Sequence[AttackOutcome]) -> str:
    """What model extraction did to the watermark, in words that fit every mix of outcomes."""
    if all(o.removed for o in runs):
        return "removed the watermark"
    if any(o.verified for o in runs):
        kept = sum(o.verified for o in runs)
        return f"left the watermark verified in {kept} of {len(runs)} runs"
    return (
        "brought the evidence below the threshold in every run, but not always within the "
        f"{100 * MAX_ACC_DROP:.0f}-point accuracy budget (a removal needs both)"
    )


def write_figures(outcomes: Sequence[AttackOutcome], out: Path, *, chance: float) -> list[Path]:
    figures = [plots.summary(outcomes, out / "summary.png", chance=chance)]
    curves = plots.epoch_curves(outcomes, out / "epochs.png", chance=chance)
    figures += [curves] if curves is not None else []
    for attack, option in SWEEPS:
        path = plots.sweep(outcomes, attack, option, out / f"{attack}-{option}.png", chance=chance)
        figures += [path] if path is not None else []
    return figures


def render(report: AttackReport) -> str:
    """``report.md``: the unattacked model, the table of attacks, plain verdicts and the figures."""
    base, outcomes, meta = report.baseline, report.outcomes, report.meta
    evidence = base.evidence
    lines = [
        f"# Robustness report: {meta.get('model', 'model')}",
        "",
        f"Key {meta.get('key_id', '?')} ({evidence.n} triggers); alpha = {report.alpha:g}, the labels "
        f"and the label-free tests each at alpha/2 (threshold {evidence.threshold} matches); data "
        f"{meta.get('data', '?')}. Before any attack: test accuracy {base.test_acc:.2%}, "
        f"{evidence.matches}/{evidence.n} trigger matches "
        f"({'verified' if base.verified else 'NOT verified'}).",
        "",
        *attack_table(outcomes),
        "",
        *verdicts(outcomes, alpha=report.alpha, baseline=base),
        "",
    ]
    swapped = swapped_table(outcomes)
    if swapped:
        lines += [*swapped, ""]
    lines += [f"![{Path(name).stem}]({name})\n" for name in report.figures]
    machine = report.machine
    lines.append(
        f"Machine: {machine['cpu']}, {machine['torch_threads']} threads; Python {machine['python']}, "
        f"torch {machine['torch']}, backmark {machine['backmark']}."
    )
    return "\n".join(lines) + "\n"


def write_report(
    out: Path,
    baseline: Baseline,
    outcomes: Sequence[AttackOutcome],
    *,
    alpha: float,
    chance: float,
    force: bool = False,
    **meta: Any,
) -> AttackReport:
    """Write ``out/report.json``, ``out/report.md`` and the figures; return the report.

    ``out`` is filled whole or left as it was; a previous report there is replaced only with ``force``,
    and a folder holding other files is refused.
    """
    report = build_report(baseline, outcomes, alpha=alpha, **meta)
    with atomic_folder(out, force=force, owned=report_file, what=WHAT) as build:
        figures = write_figures(outcomes, build, chance=chance)
        report = replace(report, figures=tuple(p.name for p in figures))
        (build / "report.json").write_text(json.dumps(report.to_dict(), indent=1, default=str) + "\n")
        (build / "report.md").write_text(render(report))
    return report
