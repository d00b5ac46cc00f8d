"""The contrast test on the images a thief queried: its margin from innocents, and the copies it shows.

A copy extracted from the deployed model's top-1 answers was trained on exactly the images the thief
queried, with the deployed model's answers as labels. On those images it sides with the deployed model
(rather than with a sibling of the same recipe) far more than on fresh test images, while a model made
without the deployed model has no reason to, even one trained on the very same images with their true
labels (a sibling is as often right there as the deployed model). `backmark contrast --queried` and
`backmark reproduce` draw a third count from those images (the owner's request log holds them).

For each family of benchmarks/contrast_strong.py (the benchmark's, and the study's `backmark reproduce
--seed B`: the same split, recipe and attacks), the pool is that family's attacker images (20,000; the
benchmark family's split is study family 0's); every one of its five models in turn is the deployed
model; the innocents are the family's own (for a study family its clean model and six study-regime
models, three trained on these very images with their true labels; for the benchmark's, its innocents on
the attacker's data and on the owner's), the better models and every model of the other families (whose
attacker and owner shares overlap these images). The benchmark family's copies are benchmarks/contrast.py's
eleven, the adaptive extractors among them; each is measured on the 20,000 images (the 5k extraction
sent only the first 5,000: it is measured on those, and the extraction with labels voted over five
shifted queries sent shifted copies of these images, which a real log would hold instead).

Rates over the whole pool (every image against every sibling), p-values at 100,000 draws' expected
decided count at the library's margin (`constants.CONTRAST_DELTA`); the rule for a margin of its own
(largest - 1/2 + 0.02, rounded up) is reported. Then the copies against their family's deployed model.

    PYTHONPATH=src:benchmarks python benchmarks/contrast_queried.py --out docs/contrast-queried.json
    PYTHONPATH=src:benchmarks python benchmarks/contrast_queried.py --render docs/contrast-queried.json
"""

from __future__ import annotations

from typing import Any

import torch
from contrast_boundary import load_families
from contrast_scores import TARGET_P, every_choice, innocents_line
from contrast_strong import begin, family_parser, finish, from_other_families, log
from contrast_study_kinds import over_pool, p_value

from backmark.constants import CONTRAST_DELTA, CONTRAST_PROBES
from backmark.contrast import answers
from backmark.study.reproduce import Settings
from backmark.study.split import threat_model_split


def _p(p: float) -> str:
    shown = f"{p:.2g}" if p > 0 else "< 1e-300"
    return f"**{shown}**" if p < TARGET_P else shown


def render(result: dict[str, Any]) -> str:
    """Markdown: the innocents' spread and the rule's margin, then every copy's rate and p-value."""
    lines = [
        innocents_line(result, "Innocent/deployed pairs on the queried images", "rates")[:-1]
        + f"; siblings as suspects (the owner's recipe, data and key; outside the null): "
        f"{min(result['siblings']):.3f} to {max(result['siblings']):.3f}.",
        "",
        f"Copies against their family's deployed model ({result['draws']:,} draws from each pool; bold: p < "
        f"{TARGET_P:g} at delta {result['delta']:g}):",
        "",
        "| family | copy | queried images | rate there | p-value | draws (queries) for p < 1e-6 | rate, test "
        "images | p-value |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["copies"]:
        needed = draws_needed(c["rate"], c["decided_share"], result["delta"])
        cost = "-" if needed is None else f"{needed:,} ({queries(needed, c['queried_images']):,})"
        lines.append(
            f"| {c['family']} | {c['name']} | {c['queried_images']:,} | {c['rate']:.3f} | "
            f"{_p(c['p_value'])} | {cost} | {c['test_rate']:.3f} | {_p(c['test_p_value'])} |"
        )
    return "\n".join(lines) + "\n"


def draws_needed(rate: float, share: float, delta: float, most: int = 10**6) -> int | None:
    """The fewest draws (to 2 significant figures) whose expected decided count gives a rate-``rate``
    copy p < 1e-6 at ``delta``; None beyond ``most``."""
    if p_value(rate, share, draws=most, delta=delta) >= TARGET_P:
        return None
    low, high = 1, most
    while high - low > max(1, high // 100):
        mid = (low + high) // 2
        low, high = (low, mid) if p_value(rate, share, draws=mid, delta=delta) < TARGET_P else (mid, high)
    return high


def queries(draws: int, pool: int) -> int:
    """The expected distinct images among ``draws`` draws with replacement from ``pool`` (the queries)."""
    return round(pool * (1 - (1 - 1 / pool) ** draws))


def main() -> None:
    parser = family_parser(__doc__)
    begun = begin(parser, render)
    if begun is None:
        return
    args, data, started = begun
    loaded = load_families(args, data)
    strong, groups, copies, deployed = loaded.strong, loaded.groups, loaded.copies, loaded.deployed
    families: dict[str, list[dict[str, Any]]] = {}
    copy_rows = []
    sibling_rates = []
    bases = {"benchmark": 0, **{f"study, seed {b}": b for b in args.families}}
    for name, base in bases.items():
        family, own = groups[name]
        d = deployed[name]  # first, as the study families have it
        family = [family[d], *(m for j, m in enumerate(family) if j != d)]
        split = threat_model_split(data, attacker_fraction=Settings().attacker_fraction, seed=base)
        pool = split.attacker.train_x
        log(f"family {name}: {len(pool)} queried images")
        said = [answers(m, pool, num_classes=None) for m in family]
        suspects = {**strong, **own, **from_other_families(groups, name)}
        theirs = {n: answers(m, pool, num_classes=None) for n, m in suspects.items()}
        families[name] = every_choice(said, theirs, over_pool, CONTRAST_DELTA)
        for j in range(1, len(said)):  # every sibling as a suspect against the deployed model and the rest
            rest = [b for i, b in enumerate(said[1:], start=1) if i != j]
            sibling_rates.append(over_pool(said[0], rest, said[j])[0])
        test_said = [answers(m, data.test_x, num_classes=None) for m in family]
        sent = {"extract 5k (same arch)": 5000} if name == "benchmark" else {}  # the first 5,000 only
        for label, model in copies[name].items():
            n = sent.get(label, len(pool))
            rate, share = over_pool(
                said[0][:n],
                [a[:n] for a in said[1:]],
                answers(model, pool[:n], num_classes=None),
            )
            test_rate, test_share = over_pool(
                test_said[0], test_said[1:], answers(model, data.test_x, num_classes=None)
            )
            copy_rows.append(
                {
                    "family": name,
                    "name": label,
                    "queried_images": n,
                    "rate": rate,
                    "decided_share": share,
                    "p_value": p_value(rate, share),
                    "test_rate": test_rate,
                    "test_p_value": p_value(test_rate, test_share),
                }
            )
    result = {
        "delta": CONTRAST_DELTA,
        "draws": CONTRAST_PROBES,
        "families": families,
        "siblings": sibling_rates,
        "copies": copy_rows,
    }
    finish(args, result, started, render)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
