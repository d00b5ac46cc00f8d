"""The contrast test on the images a thief queried: its margin from innocents, and the copies it shows.

A copy extracted from the deployed model's top-1 answers was trained on exactly the images the thief
queried, with the deployed model's answers as labels. On those images it sides with the deployed model
(rather than with a sibling of the same recipe) far more than on fresh test images, while a model made
without the deployed model has no reason to, even one trained on the very same images with their true
labels (a sibling is as often right there as the deployed model). `backmark contrast --queried` and
`backmark reproduce` draw a third count from those images (the owner's request log holds them).

For each study family of benchmarks/contrast_strong.py (`backmark reproduce --seed B`: the same split,
recipe and attacks), the pool is that family's attacker images (20,000); every one of its five models in
turn is the deployed model; the innocents are the family's own (its clean model and six study-regime
models, three trained on these very images with their true labels), the better models and every model of
the other families (whose attacker and owner shares overlap these images). Rates over the whole pool
(every image against every sibling), p-values at 100,000 draws' expected decided count at the library's
margin (`constants.CONTRAST_DELTA`); the rule for a margin of its own (largest - 1/2 + 0.02, rounded up)
is reported. Then the study's copies against their family's deployed model.

    PYTHONPATH=src:benchmarks python benchmarks/contrast_queried.py --out docs/contrast-queried.json
    PYTHONPATH=src:benchmarks python benchmarks/contrast_queried.py --render docs/contrast-queried.json
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch
from contrast_boundary import load_families
from contrast_strong import begin, family_parser, finish, from_other_families, log
from contrast_study_kinds import over_pool, p_value

from backmark.constants import CONTRAST_DELTA
from backmark.contrast import answers
from backmark.study.reproduce import Settings
from backmark.study.split import threat_model_split

TARGET_P = 1e-6


def _p(p: float) -> str:
    shown = f"{p:.2g}" if p > 0 else "< 1e-300"
    return f"**{shown}**" if p < TARGET_P else shown


def render(result: dict[str, Any]) -> str:
    """Markdown: the innocents' spread and the rule's margin, then every copy's rate and p-value."""
    pairs = [
        (r["rate"], f"{n}, against {f}'s model {c['deployed']}")
        for f, fam in result["families"].items()
        for c in fam
        for n, r in c["models"].items()
    ]
    rates = [r for r, _ in pairs]
    top = max(pairs)
    rule = math.ceil((top[0] - 0.5 + 0.02) * 100) / 100
    flagged = sum(
        r["p_value"] < TARGET_P
        for fam in result["families"].values()
        for c in fam
        for r in c["models"].values()
    )
    lines = [
        f"Innocent/deployed pairs on the queried images: {len(rates):,}, rates {statistics.fmean(rates):.3f} "
        f"+- {statistics.pstdev(rates):.3f}, largest {top[0]:.3f} ({top[1]}); the rule (largest - 1/2 + "
        f"0.02, rounded up) gives delta {rule:.2f}; the library's is {result['delta']:g}; flagged at p < "
        f"{TARGET_P:g}: {flagged}. Siblings as suspects (the owner's recipe, data and key; outside the "
        f"null): "
        f"{min(result['siblings']):.3f} to {max(result['siblings']):.3f}.",
        "",
        f"Copies against their family's deployed model ({result['draws']:,} draws from each pool; bold: p < "
        f"{TARGET_P:g} at delta {result['delta']:g}):",
        "",
        "| family | copy | rate, queried images | p-value | rate, test images | p-value |",
        "|---|---|---|---|---|---|",
    ]
    for c in result["copies"]:
        lines.append(
            f"| {c['family']} | {c['name']} | {c['rate']:.3f} | {_p(c['p_value'])} | {c['test_rate']:.3f} | "
            f"{_p(c['test_p_value'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = family_parser(__doc__)
    begun = begin(parser, render)
    if begun is None:
        return
    args, data, started = begun
    loaded = load_families(args, data)
    strong, groups, copies = loaded.strong, loaded.groups, loaded.copies
    families: dict[str, list[dict[str, Any]]] = {}
    copy_rows = []
    sibling_rates = []
    for base in args.families:
        name = f"study, seed {base}"
        family, own = groups[name]
        split = threat_model_split(data, attacker_fraction=Settings().attacker_fraction, seed=base)
        pool = split.attacker.train_x
        log(f"family {name}: {len(pool)} queried images")
        said = [answers(m, pool, num_classes=None) for m in family]
        suspects = {**strong, **own, **from_other_families(groups, name)}
        theirs = {n: answers(m, pool, num_classes=None) for n, m in suspects.items()}
        choices = []
        for d, a in enumerate(said):
            others = [b for j, b in enumerate(said) if j != d]
            models = {}
            for n, s in theirs.items():
                rate, share = over_pool(a, others, s)
                models[n] = {"rate": rate, "decided_share": share, "p_value": p_value(rate, share)}
            choices.append({"deployed": d, "models": models})
            if d == 0:  # every sibling as a suspect against the deployed model and the other siblings
                for j in range(len(others)):
                    rest = [b for i, b in enumerate(others) if i != j]
                    sibling_rates.append(over_pool(a, rest, others[j])[0])
        families[name] = choices
        test_said = [answers(m, data.test_x, num_classes=None) for m in family]
        for label, model in copies[name].items():
            rate, share = over_pool(said[0], said[1:], answers(model, pool, num_classes=None))
            test_rate, test_share = over_pool(
                test_said[0], test_said[1:], answers(model, data.test_x, num_classes=None)
            )
            copy_rows.append(
                {
                    "family": name,
                    "name": label,
                    "rate": rate,
                    "decided_share": share,
                    "p_value": p_value(rate, share),
                    "test_rate": test_rate,
                    "test_p_value": p_value(test_rate, test_share),
                }
            )
    result = {
        "delta": CONTRAST_DELTA,
        "draws": 100000,
        "families": families,
        "siblings": sibling_rates,
        "copies": copy_rows,
    }
    finish(args, result, started, render)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
