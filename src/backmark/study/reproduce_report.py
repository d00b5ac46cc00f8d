"""The markdown of ``backmark reproduce``: setup, the owner's models, every attack, and plain verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backmark.study.attack_report import (
    SWEEPS,
    attack_table,
    extraction_verdict,
    machine_info,
    p_text,
    swapped_table,
    verdicts,
)
from backmark.study.measure import MAX_ACC_DROP, AttackOutcome, Baseline, within_budget
from backmark.study.response_study import render_response
from backmark.verify import Evidence
from backmark.verify.stats import threshold

SOK_FAMILIES = ("weight-shift", "regularize", "distill", "adv-train", "launder")  # summarised in one line


@dataclass(frozen=True)
class ModelRow:
    """One of the owner's models, as the results table shows it."""

    name: str
    test_acc: float
    evidence: Evidence
    epochs: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON-ready record (``results.json``'s ``models``)."""
        return {
            "name": self.name,
            "test_acc": self.test_acc,
            **self.evidence.to_dict(),
            "epochs": self.epochs,
            "seconds": self.seconds,
        }


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _models_table(rows: Sequence[ModelRow]) -> list[str]:
    lines = [
        "| model | test accuracy | trigger matches | p-value | verified | epochs | training time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e = r.evidence
        lines.append(
            f"| {r.name} | {r.test_acc:.2%} | {e.matches}/{e.n} | {p_text(e.p_value, e.log10_p_value)} "
            f"| {'yes' if e.verified else 'no'} | {r.epochs} | {r.seconds:.0f} s |"
        )
    return lines


def _figures(victim: str, outcomes: Sequence[AttackOutcome], figures_dir: str) -> list[str]:
    names = ["summary.png"]
    if any(len(o.history) > 1 for o in outcomes):
        names.append("epochs.png")
    for attack, option in SWEEPS:
        if len({str(o.params.get(option)) for o in outcomes if o.attack == attack}) > 1:
            names.append(f"{attack}-{option}.png")
    return [f"![{victim} {n[:-4]}]({figures_dir}/{victim}-{n})\n" for n in names]


def _deviations(s: Mapping[str, Any], arch: str) -> list[str]:
    lines = [
        f"- Architecture: the paper used a pre-activation ResNet-18 on CIFAR-10; this run uses `{arch}` on "
        f"{'Fashion-MNIST' if arch == 'cnn' else 'the given data'}, trained {_n(s['epochs'], 'epoch')} "
        "(one-cycle SGD), so that the whole study fits on a CPU.",
        f"- Fine-tuning attacks: {_n(s['finetune_epochs'], 'epoch')} at lr "
        f"{', '.join(map(str, s['finetune_lrs']))} "
        "(constant, SGD with Nesterov momentum 0.9, weight decay 5e-4, batch 100), without triggers"
        + (", as in the paper." if s["finetune_epochs"] == 20 else "; the paper ran 20 epochs."),
        "- FTLL and RTLL train the output layer on the frozen network's features (the rest stays in eval "
        "mode, so no weight or batch-norm statistic outside the output layer changes).",
        "- The PreTrained model continues training at a constant lr 0.01 with 10 triggers per batch until "
        "every trigger is learned (see docs/embedding.md); the reference code resumed at lr 1e-4.",
    ]
    if s.get("train_size") or s.get("test_size"):
        lines.append(f"- Subsets: {s['train_size']} training and {s['test_size']} test images (a smoke run).")
    return lines


def _literature(runs: Mapping[str, tuple[Baseline, Sequence[AttackOutcome]]]) -> list[str]:
    """Generated comparisons with what SPEC section 6 quotes from the literature."""
    every = [(victim, o) for victim, (_, outcomes) in runs.items() for o in outcomes]
    lines = []
    paper = [(v, o) for v, o in every if o.attack in ("ftll", "ftal", "rtll", "rtal")]
    if paper:
        victim, low = min(paper, key=lambda vo: vo[1].evidence.matches)
        least = low.evidence
        kept = sum(o.verified for _, o in paper)
        lines.append(
            f"- The paper's four fine-tuning attacks left the watermark verified (black-box) in {kept} of "
            f"{len(paper)} runs; the least evidence left was {least.matches}/{least.n} ({low.label}, "
            f"{victim} model), against a threshold of {least.threshold}."
        )
    large = [o for _, o in every if o.attack == "ft-large-lr"]
    if large:
        low = min(large, key=lambda o: o.evidence.matches)
        lines.append(
            f"- Large learning rates: the strongest run ({low.label}) left {low.evidence.matches}/"
            f"{low.evidence.n} matches at "
            f"{-100 * low.acc_drop:+.1f} points of accuracy. SPEC section 6 quotes lr 1e-2 dropping the "
            "evidence to chance at a cost of 4.5-8 points for CIFAR-10 ResNets; the rate needed, and whether "
            "it pays, depend on the model and its training schedule."
        )
    pruned = sorted((o for _, o in every if o.attack == "prune"), key=lambda o: float(o.params["sparsity"]))
    gone = [o for o in pruned if not o.verified]
    if pruned:
        lines.append(
            "- Magnitude pruning: "
            + (
                f"the evidence fell below the threshold only at sparsity {gone[0].params['sparsity']}, where "
                f"test accuracy was {gone[0].test_acc_after:.1%}"
                if gone
                else "the watermark stayed verified at every sparsity tried"
            )
            + " (the SoK: the mark survives until the model is ruined)."
        )
    extraction = [o for _, o in every if o.attack == "extract"]
    if extraction:
        removed = all(o.removed for o in extraction)
        lines.append(
            f"- Model extraction {extraction_verdict(extraction)} "
            + ("as the SoK (Lukas et al. 2022) found" if removed else "(the SoK found that it removes it)")
            + ": "
            + "; ".join(
                f"{o.label}: {o.evidence.matches}/{o.evidence.n}, {-100 * o.acc_drop:+.1f} points"
                for o in extraction
            )
            + ". It needs only the suspect's top-1 labels and the attacker's unlabelled images."
        )
    scheme = [o for _, o in every if o.attack in ("overwrite", "rekey", "unlearn")]
    if scheme:
        lines.append(
            "- Attacks that know the scheme (docs/attacks.md): "
            + "; ".join(f"{o.label}: {o.evidence.matches}/{o.evidence.n}, {_fate(o)}" for o in scheme)
            + ". rekey is the piracy case (the attacker embeds its own backmark key on top): the "
            "owner's mark must still verify."
        )
    sok = [o for _, o in every if o.attack in SOK_FAMILIES]
    if sok:
        lines.append(
            "- The rest of the SoK's toolbox (docs/attacks.md): "
            + "; ".join(f"{o.label}: {o.evidence.matches}/{o.evidence.n}, {_fate(o)}" for o in sok)
            + "."
        )
    rescued = [
        o for _, o in every if not o.evidence.verified and o.label_free is not None and o.label_free.verified
    ]
    if rescued:
        lines.append(
            "- The label-free test (docs/label-free.md; each test at alpha/2 in the trigger mark's claim, "
            "`verify`'s default) carried the claim where the labels test alone failed, after: "
            + "; ".join(
                f"{o.label} (label-free p {o.label_free.p_value:.2g})" for o in rescued if o.label_free
            )
            + "."
        )
    return lines


PIECE_WORDS = {
    "labels": "the labels test (trigger answers; black-box; exact)",
    "label-free": "the label-free test (trigger answers; black-box; exact)",
    "lineage": "the lineage test (the suspect's weights; white-box; exact under independent "
    "initialisations, so it also flags a model trained from the owner's seed)",
    "contrast": "the contrast test (top-1 answers on probes from the test images and from the images the "
    "attacker queries with, and the suspect's scores where they can be compared (finite); black-box; "
    "assumes innocent models side with the deployed model on at most 1/2 + delta of the contested probes "
    "of either pool, and point closer to its scores on at most 1/2 + delta_s of the probes, all measured "
    "in docs/contrast.md; its p-value is the smallest of the counts' times their number)",
}


def _counts_within(o: AttackOutcome) -> bool:
    """Whether an attack's cost is within the budget (a change of task always is: it serves a new task)."""
    return o.task != "original" or within_budget(o.test_acc_before, o.test_acc_after)


def served_ownership(response: Mapping[str, Any] | None) -> list[str]:
    """The response-mark study's extractions through the serving API, judged by every piece: one line."""
    rows = [r for r in (response or {}).get("rows", ()) if r["what"] == "extracted" and r["every_piece"]]
    if not rows:
        return []
    shown = [r for r in rows if r["every_piece"]["verified"]]
    lost = [r for r in rows if not r["every_piece"]["verified"]]
    line = (
        '- Extracted through the serving API, where the response mark applies as well (section "The '
        f'response mark"): ownership shown after {len(shown)} of {len(rows)} extractions'
    )
    if shown:
        line += ": " + "; ".join(f"{r['name']} ({', '.join(r['every_piece']['passed'])})" for r in shown)
    if lost:
        cells = []
        for r in lost:
            claim = r["every_piece"]
            name, best = min(claim["evidence"].items(), key=lambda kv: kv[1]["log10_p_value"])
            cells.append(
                f"{r['name']} (smallest: {name} p {p_text(best['p_value'], best['log10_p_value'])} "
                f"against its level {claim['level']:g})"
            )
        line += ". Not shown: " + "; ".join(cells)
    return [line + "."]


def ownership_section(
    runs: Mapping[str, tuple[Baseline, Sequence[AttackOutcome]]],
    innocents: Mapping[str, Any],
    alpha: float,
    response: Mapping[str, Any] | None = None,
) -> list[str]:
    """Which evidence still shows ownership after each attack within budget (and through the serving API,
    where the response-mark study ran), and on innocent models."""
    every = [(victim, o) for victim, (_, outcomes) in runs.items() for o in outcomes if o.claim is not None]
    if not every:
        return []
    within = [(v, o) for v, o in every if _counts_within(o)]
    lost = [f"{o.label} ({v})" for v, o in within if not o.shown]
    lines = [
        "## Ownership from every piece of evidence",
        "",
        "One claim per suspect from every piece of evidence that applies to it, each at alpha / k for its "
        f"k pieces, so an innocent suspect is flagged with probability at most alpha = {alpha:g} whatever "
        "the tests' dependence (docs/claim.md). What each p-value assumes:",
        "",
        *[f"- {name}: {words}." for name, words in PIECE_WORDS.items()],
        "",
        "Lineage applies where the suspect's layers pair with the owner's (not an extraction into another "
        "architecture); contrast where the suspect answers the original task (not transfer) and the "
        "study trained siblings (the FromScratch model only). Bold p-values in the tables passed their "
        "level.",
        "",
    ]
    probe = next(
        (p.figures for _, o in every if o.claim for p in o.claim.pieces if p.name == "contrast"), None
    )
    if probe is not None:
        lines += [
            f"The contrast test draws {probe['probes']:,} probes with replacement from the test images "
            f"(which no model of the owner's or the attacker's trained on) and asks each suspect the "
            f"{probe['queries']:,} distinct ones; the deployed model and the probe's sibling differ on "
            f"{probe['disagreements']:,} of the draws; margin delta {probe['delta']:g}"
            + (
                f"; on scores (every draw), delta_s {probe['scores']['delta']:g}"
                if probe.get("scores")
                else ""
            )
            + (
                f". As many probes are drawn from the attacker's images (the images a thief queries the "
                f"deployed model with, as the owner's request log would hold them; none of the owner's "
                f"models trained on them); the two models differ on {probe['queried']['disagreements']:,} "
                f"of those draws."
                if probe.get("queried")
                else "."
            ),
            "",
        ]
    if lost:
        lines.append(
            f"- **Ownership NOT shown** by any evidence after {len(lost)} of {len(within)} attacks within "
            f"the {100 * MAX_ACC_DROP:.0f}-point budget: " + "; ".join(lost) + "."
        )
    else:
        lines.append(
            f"- Ownership shown after every one of the {len(within)} attacks within the "
            f"{100 * MAX_ACC_DROP:.0f}-point budget."
        )
    for name in ("lineage", "contrast"):
        only = [o.label for _, o in within if o.claim is not None and o.claim.passed == (name,)]
        if only:
            lines.append(f"- Shown by {name} alone: " + "; ".join(only) + ".")
    lines += served_ownership(response)
    removed_shown = [o.label for _, o in within if o.removed and o.shown]
    if removed_shown:
        lines.append(
            "- The trigger mark was removed but ownership still shown: " + "; ".join(removed_shown) + "."
        )
    if innocents:
        cells = []
        flagged = []
        for name, claim in innocents.items():
            if claim is None:
                continue
            ev = claim["evidence"]
            ps = ", ".join(f"{k} {p_text(v['p_value'], v['log10_p_value'])}" for k, v in ev.items())
            cells.append(f"{name} ({ps})")
            if claim["verified"]:
                flagged.append(name)
        verdict = "**flagged**: " + ", ".join(flagged) if flagged else "none flagged"
        lines.append(
            "- Innocent models (the owner's models trained without the key, from other seeds), as "
            f"suspects: {verdict}; " + "; ".join(cells) + ". docs/lineage.md and docs/contrast.md "
            "measure 20 and more innocents per test."
        )
    lines.append("")
    return lines


def _fate(o: AttackOutcome) -> str:
    if o.removed:
        return f"**removed** ({-100 * o.acc_drop:+.1f} points)"
    if o.verified:
        return f"verified ({-100 * o.acc_drop:+.1f} points)"
    return f"below the threshold at {-100 * o.acc_drop:+.1f} points (over budget)"


def _key_kind(kind: str, classes: int) -> str:
    """What the key's triggers are, for the setup list."""
    if kind == "heldout":
        return (
            "heldout triggers (real training images of the owner, left out of its training), each labelled "
            f"uniformly among the {classes - 1} classes other than its own (chance 1/{classes - 1})"
        )
    if kind == "blend":
        return (
            "blend triggers (averages of two of the owner's training images of distinct classes), each "
            f"labelled uniformly among the {classes - 2} classes that are neither (chance 1/{classes - 2})"
        )
    return f"{kind} trigger images, labels uniform over {classes} classes"


def render_results(
    summary: Mapping[str, Any],
    rows: Sequence[ModelRow],
    runs: Mapping[str, tuple[Baseline, Sequence[AttackOutcome]]],
    *,
    figures_dir: str,
) -> str:
    """The results document (see :func:`backmark.study.reproduce.reproduce`)."""
    machine = machine_info()
    s = summary["settings"]
    alpha, n, c = summary["alpha"], summary["key_size"], summary["num_classes"]
    null = summary.get("null_classes", c)  # C, or fewer for real-image triggers (labels avoid their classes)
    k = threshold(n, null, alpha)
    k2 = threshold(n, null, alpha / 2)
    minutes = summary["seconds"] / 60
    scratch_base, scratch = runs["from-scratch"]
    lines = [
        f"# Removal attacks on backmark watermarks: results on {summary['dataset']}",
        "",
        f"Produced by `{summary['command']}` on {datetime.now(UTC):%Y-%m-%d} in {minutes:.1f} minutes, on "
        f"{machine['cpu']} ({machine['cpus']} CPUs, {machine['torch_threads']} torch threads, no GPU); "
        f"Python {machine['python']}, torch {machine['torch']}, numpy {machine['numpy']}, backmark "
        f"{machine['backmark']}. Seed {summary['seed']} fixes the threat-model split, the key, the "
        f"owner's training (clean: seed {summary['seed']}, FromScratch: +1, PreTrained: +2) and every "
        "attack. "
        "One run of each: differences of a point or two of accuracy are within seed-to-seed noise.",
        "",
        "## In short",
        "",
        f"Against the FromScratch-marked model (test accuracy {scratch_base.test_acc:.2%}, "
        f"{scratch_base.evidence.matches}/{n} trigger matches):",
        "",
        *verdicts(scratch, alpha=alpha, baseline=scratch_base),
        "",
    ]
    if summary.get("searches"):
        lines += [*_search_short(summary["searches"]), ""]
    if "pretrained" in runs:
        pre_base, pre = runs["pretrained"]
        lines += [
            f"Against the PreTrained-marked model ({pre_base.test_acc:.2%}, "
            f"{pre_base.evidence.matches}/{n} trigger matches), "
            "with the paper's four fine-tuning attacks:",
            "",
            *verdicts(pre, alpha=alpha, baseline=pre_base),
            "",
        ]
    lines += ["## Compared with the literature", "", *_literature(runs), ""]
    lines += [
        "## Setup",
        "",
        "- Threat model (Lukas et al., SoK, IEEE S&P 2022): the "
        f"{summary['owner_size'] + summary['attacker_size']} "
        f"training images are split at random: the owner trains on {summary['owner_size']}, the attacker "
        f"holds the other {summary['attacker_size']} ({s['attacker_fraction']:.3g}); all "
        f"{summary['test_size']} test images measure accuracy only.",
        "- Labels show an attack's main options and any other that differs from its default "
        "(`backmark attack --attacks list` prints every option and default).",
        f"- Key {summary['key_id']}: {n} {_key_kind(s.get('kind', 'abstract'), c)}; "
        "images and labels derived from the seed (reproducible, hence not secret; real keys come from "
        "`backmark keygen`), commitment openings fresh, so the key id differs between runs.",
        "- The trigger mark is verified black-box (top-1 labels only), as `backmark verify` decides by "
        f"default: the labels test or the label-free test, each exact, each at alpha/2 = {alpha / 2:g} "
        f"(alpha = {alpha:g}), i.e. at least {k2} of {n} matches or label-free hits (chance is "
        f"{n / null:.0f}). The models table lists the labels test alone at alpha ({k} matches).",
        "- An attack **removes** the watermark when the model was verified before it, the attacked model is "
        f"not, and at most {100 * MAX_ACC_DROP:.0f} points of test accuracy were lost (for transfer "
        "learning, which serves a new task, not verified suffices). **Ownership shown** is the claim from "
        "every piece of evidence (the two trigger tests, lineage, contrast; each at alpha/k): see "
        '"Ownership from every piece of evidence". Attack time is wall time on this '
        "machine, without the per-epoch measuring.",
        *_deviations(s, summary["arch"]),
        "",
        "## The owner's models",
        "",
        *_models_table(rows),
        "",
        "## Every attack on the FromScratch model",
        "",
        *attack_table(scratch),
        "",
        *swapped_table(scratch),
        "",
        *_figures("from-scratch", scratch, figures_dir),
    ]
    if "pretrained" in runs:
        _, pre = runs["pretrained"]
        lines += [
            "## The paper's fine-tuning attacks on the PreTrained model",
            "",
            *attack_table(pre),
            "",
            *swapped_table(pre),
            "",
            *_figures("pretrained", pre, figures_dir),
        ]
    lines += ownership_section(runs, summary.get("innocents") or {}, alpha, summary.get("response"))
    if summary.get("searches"):
        lines += render_searches(summary["searches"])
    if summary.get("response"):
        lines += render_response(summary["response"], alpha=alpha)
    else:
        lines += [
            "## The response mark",
            "",
            "Not run in this run (`--response-rate 0`): docs/response-mark.md has its measurements.",
            "",
        ]
    lines += [
        "## How to read this",
        "",
        "- Evidence is what a verifier sees through the suspect's labels. The reference code's figure for "
        "RTLL and RTAL (original output layer swapped back in) needs the suspect's weights; it is listed "
        "apart and never counts as verification.",
        "- Transfer learning leaves a model for a different label set; its answers on the triggers are "
        "compared with the key labels as they are, which keeps the test exact but cannot show a mark "
        "whose classes no longer exist.",
        "- Input transformations and evasion change how the suspect answers, not its weights; their cost is "
        "what legitimate users of the suspect's service would lose in accuracy.",
        "",
        "Per-victim reports with every number (`report.json`, `report.md`) are in the run's output folder.",
        "",
    ]
    return "\n".join(lines)


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _strongest(found: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((t for t in found["tried"] if t["value"] == found["strongest_value"]), None)


def _search_short(searches: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line for the summary: which adaptive attackers removed the mark within budget."""
    removed = [f"{f['attack']} ({f['option']})" for f in searches if f["removed"]]
    head = (
        f"Adaptive attackers (the strongest setting of {len(searches)} knobs within budget, by bisection): "
    )
    if not removed:
        return [head + "none removed the mark."]
    return [head + "removed by " + ", ".join(removed) + '; see "Adaptive attackers" below.']


def _piece_cell(claim: Mapping[str, Any] | None, name: str) -> str:
    if claim is None:
        return "-"
    piece = claim["evidence"].get(name)
    if piece is None:
        return "n/a"
    text = p_text(piece["p_value"], piece["log10_p_value"])
    return f"**{text}**" if piece["verified"] else text


def _claim_cells(found: Mapping[str, Any], best: Mapping[str, Any]) -> str:
    """Lineage and contrast p-values at the strongest value, and whether ownership was shown at every
    value run within the budget (the adaptive attacker may stop at any of them)."""
    claim = best.get("claim")
    budget = float(found["max_drop"])
    within = [t for t in found["tried"] if within_budget(t["test_acc_before"], t["test_acc_after"], budget)]
    shown = all(t.get("shown", False) for t in within)
    verdict = "-" if claim is None else ("yes" if shown else "**no**")
    return f"{_piece_cell(claim, 'lineage')} | {_piece_cell(claim, 'contrast')} | {verdict}"


def render_searches(searches: Sequence[Mapping[str, Any]]) -> list[str]:
    """The section on the adaptive attackers (:mod:`backmark.study.search`)."""
    budget = 100 * float(searches[0]["max_drop"])
    lines = [
        "## Adaptive attackers: the strongest setting within budget",
        "",
        "For every attack with a strength knob, bisection over the values listed (weakest first) finds the "
        f"strongest one that costs at most {budget:.0f} points of test accuracy on the FromScratch model; "
        "the table gives what that attack left, and every value bisection ran. A removal at any value run "
        "within budget counts.",
        "",
        "| attack | knob: values searched | strongest within budget | test acc drop | trigger matches "
        "| labels p | label-free p | removed | lineage p | contrast p | ownership shown | runs (value: "
        "matches, drop) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in searches:
        best = _strongest(f)
        fixed = "".join(f", {k}={v}" for k, v in f["fixed"].items() if k != "seed")
        values = ", ".join(_value(v) for v in f["values"])
        runs = "; ".join(
            f"{_value(t['value'])}: {t['evidence']['labels']['matches']}, "
            f"{100 * (t['test_acc_before'] - t['test_acc_after']):+.1f}"
            for t in f["tried"]
        )
        if best is None:
            cells = "none | - | - | - | -"
            pieces = "- | - | -"
        else:
            labels, free = best["evidence"]["labels"], best["evidence"].get("label-free")
            free_p = "-" if not free else p_text(free["p_value"], free["log10_p_value"])
            cells = (
                f"{_value(f['strongest_value'])} | "
                f"{100 * (best['test_acc_before'] - best['test_acc_after']):.1f} points | "
                f"{labels['matches']}/{labels['n']} | {p_text(labels['p_value'], labels['log10_p_value'])} "
                f"| {free_p}"
            )
            pieces = _claim_cells(f, best)
        lines.append(
            f"| {f['attack']}{fixed} | {f['option']}: {values} | {cells} | "
            f"{'**yes**' if f['removed'] else 'no'} | {pieces} | {runs} |"
        )
    lines.append("")
    return lines
