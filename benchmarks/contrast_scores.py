"""The contrast test on scores: its margin from innocents, and the copies it shows (docs/contrast.md).

Where the suspect's scores can be read (a model file; not yet a remote target), `backmark.contrast`
runs a second count beside the answers': on every probe, are the suspect's scores (as centred
log-probabilities) closer to the deployed model's than to the probe's sibling's? It needs a margin of
its own, chosen like the answers' one (the largest innocent rate - 1/2 + 0.02, rounded up) from the same
innocents against every choice of the deployed model: the four families of
benchmarks/contrast_strong.py, each with its own innocents, the better models and every model of the
other families (1,200 pairs). Then the copies: benchmarks/contrast.py's 11 against its deployed model
and the study's extractions and distillation of each family (benchmarks/contrast_boundary.py's).

Rates are over the whole test pool (every image against every sibling); p-values at the expected
decided count of 100,000 draws, at the margin the library uses (`constants.CONTRAST_SCORE_DELTA`).

    PYTHONPATH=src python benchmarks/contrast_scores.py --out docs/contrast-scores.json
    PYTHONPATH=src python benchmarks/contrast_scores.py --render docs/contrast-scores.json
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import torch
from contrast_boundary import load_families
from contrast_strong import begin, family_parser, finish, from_other_families, log
from contrast_study_kinds import over_pool as answers_over_pool
from contrast_study_kinds import p_value
from torch import nn

from backmark.constants import CONTRAST_PROBES, CONTRAST_SCORE_DELTA
from backmark.contrast import score_test
from backmark.targets import ModuleTarget

TARGET_P = 1e-6


def outputs(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's outputs on uint8 ``images``: float (N, K)."""
    target = ModuleTarget(model)
    return torch.cat([target.scores(images[i : i + 1000].float() / 255) for i in range(0, len(images), 1000)])


def over_pool(
    deployed: torch.Tensor, others: list[torch.Tensor], suspect: torch.Tensor
) -> tuple[float, float]:
    """The score test's rate over the whole pool (input x against sibling j is probe x * k + j) and its
    decided share."""
    k = len(others)
    n, classes = deployed.shape
    pairs = torch.stack(others, dim=1).reshape(n * k, classes)  # row x * k + j: sibling j on x
    e = score_test(
        deployed.repeat_interleave(k, dim=0),
        pairs.unsqueeze(0).expand(k, -1, -1),
        suspect.repeat_interleave(k, dim=0),
        delta=CONTRAST_SCORE_DELTA,
    )
    return e.rate, (e.sides_deployed + e.sides_siblings) / e.probes


def innocents_line(result: dict[str, Any], pairs_noun: str, rates_noun: str) -> str:
    """One line on a result's innocent/deployed pairs (``families`` -> choices -> ``models``): their
    rates' spread and largest, the rule's margin against the library's, and how many were flagged."""
    pairs = [
        (r["rate"], f"{n}, against {f}'s model {c['deployed']}", r["p_value"])
        for f, fam in result["families"].items()
        for c in fam
        for n, r in c["models"].items()
    ]
    rates = [r for r, _, _ in pairs]
    top = max(pairs)
    rule = math.ceil((top[0] - 0.5 + 0.02) * 100) / 100
    flagged = sum(p < TARGET_P for _, _, p in pairs)
    return (
        f"{pairs_noun}: {len(rates):,}, {rates_noun} {statistics.fmean(rates):.3f} +- "
        f"{statistics.pstdev(rates):.3f}, largest {top[0]:.3f} ({top[1]}); the rule (largest - 1/2 + "
        f"0.02, rounded up) gives delta {rule:.2f}; the library's is {result['delta']:g}; flagged at "
        f"p < {TARGET_P:g}: {flagged}."
    )


def every_choice(
    said: list[torch.Tensor],
    theirs: dict[str, torch.Tensor],
    rate_of: Callable[[torch.Tensor, list[torch.Tensor], torch.Tensor], tuple[float, float]],
    delta: float,
) -> list[dict[str, Any]]:
    """Every family member in turn as the deployed model (``said``: the members' outputs): each
    innocent's (``theirs``) rate and decided share by ``rate_of`` over the pool, and its p-value at
    ``delta``."""
    choices = []
    for d, a in enumerate(said):
        others = [b for j, b in enumerate(said) if j != d]
        models = {}
        for n, s in theirs.items():
            rate, share = rate_of(a, others, s)
            models[n] = {"rate": rate, "decided_share": share, "p_value": p_value(rate, share, delta=delta)}
        choices.append({"deployed": d, "models": models})
    return choices


def render(result: dict[str, Any]) -> str:
    """Markdown: the innocents' spread and the rule's margin, then every copy's rate and p-value."""
    lines = [
        innocents_line(result, "Innocent/deployed pairs", "score rates"),
        "",
        f"Copies against their family's deployed model ({result['draws']:,} draws; bold: p < {TARGET_P:g} "
        f"at delta {result['delta']:g}):",
        "",
        "| family | copy | score rate | p-value | answers' rate (for comparison) |",
        "|---|---|---|---|---|",
    ]
    for c in result["copies"]:
        shown = f"{c['p_value']:.2g}" if c["p_value"] > 0 else "< 1e-300"
        p = f"**{shown}**" if c["p_value"] < TARGET_P else shown
        lines.append(f"| {c['family']} | {c['name']} | {c['rate']:.3f} | {p} | {c['answers_rate']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    begun = begin(family_parser(__doc__), render)
    if begun is None:
        return
    args, data, started = begun
    images = data.test_x
    loaded = load_families(args, data)
    strong, groups, copies, deployed = loaded.strong, loaded.groups, loaded.copies, loaded.deployed
    families: dict[str, list[dict[str, Any]]] = {}
    copy_rows = []
    for name, (family, own) in groups.items():
        log(f"family {name}")
        said = [outputs(m, images) for m in family]
        suspects = {**strong, **own, **from_other_families(groups, name)}
        theirs = {n: outputs(m, images) for n, m in suspects.items()}
        families[name] = every_choice(said, theirs, over_pool, CONTRAST_SCORE_DELTA)
        d = deployed[name]
        others = [b for j, b in enumerate(said) if j != d]
        for label, model in copies[name].items():
            s = outputs(model, images)
            rate, share = over_pool(said[d], others, s)
            # the answers' rate on the same pool, for comparison (the probe test's count)
            answers_rate, _ = answers_over_pool(
                said[d].argmax(dim=1), [b.argmax(dim=1) for b in others], s.argmax(dim=1)
            )
            copy_rows.append(
                {
                    "family": name,
                    "name": label,
                    "rate": rate,
                    "decided_share": share,
                    "p_value": p_value(rate, share, delta=CONTRAST_SCORE_DELTA),
                    "answers_rate": answers_rate,
                }
            )
    result = {
        "families": families,
        "copies": copy_rows,
        "delta": CONTRAST_SCORE_DELTA,
        "draws": CONTRAST_PROBES,
    }
    finish(args, result, started, render)


if __name__ == "__main__":
    main()
