"""The contrast test on docs/results.md's own models, natural against shifted probes (docs/contrast.md).

Takes the output folder of `backmark reproduce` (its models/: the FromScratch model, its siblings and the
clean model), runs the suite's two extractions again with their seeds (the same copies the study judged),
and gives every model's rate over the whole pool (the 10,000 test images, or those and their one-pixel
shifts: the `shifted` kind) and the probe test's p-value at 100,000 draws' expected decided count. The
siblings, each taken as a suspect against the others, are the innocents closest to the deployed model.

    backmark reproduce --out RUN --results RUN/results.md --search cheap --response-rate 0 --workers 2
    PYTHONPATH=src python benchmarks/contrast_study_kinds.py --run RUN
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from backmark.constants import CONTRAST_DELTA, CONTRAST_PROBES
from backmark.contrast import answers
from backmark.contrast.probes import SHIFTS, shifted
from backmark.contrast.stats import log10_binomial_tail, probe_test
from backmark.data import load_dataset
from backmark.models import load_checkpoint
from backmark.study.reproduce import Settings, attack_suite
from backmark.study.split import threat_model_split

SIBLINGS = ("sibling-1", "sibling-2", "sibling-3", "sibling-4")


def over_pool(
    deployed: torch.Tensor, others: list[torch.Tensor], suspect: torch.Tensor
) -> tuple[float, float]:
    """The suspect's rate over the whole pool (every input against every sibling, counted by the test's
    own :func:`probe_test`: input x against sibling j is probe x * k + j) and the decided share."""
    k = len(others)
    e = probe_test(
        deployed.repeat_interleave(k),
        torch.stack(others).T.reshape(1, -1).expand(k, -1),  # column x * k + j holds sibling j on x
        suspect.repeat_interleave(k),
        delta=CONTRAST_DELTA,
    )
    return e.rate, (e.sides_deployed + e.sides_siblings) / e.probes


def p_value(r: float, share: float, draws: int = CONTRAST_PROBES, delta: float = CONTRAST_DELTA) -> float:
    """The probe test's p-value at ``draws`` draws' expected decided count, for a suspect at rate ``r``."""
    decided = round(draws * share)
    return 10 ** log10_binomial_tail(round(decided * r), decided, 0.5 + delta) if decided else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="a `backmark reproduce` output folder")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    models_dir = args.run / "models"
    if not (models_dir / "sibling-1.pt").is_file():
        sys.exit(f"no siblings in {models_dir}: give the folder of a `backmark reproduce` run")
    torch.set_num_threads(args.threads)
    started = time.time()
    names = ("from-scratch", *SIBLINGS, "clean")
    models = {n: load_checkpoint(models_dir / f"{n}.pt")[0].eval() for n in names}
    data = load_dataset("fashion-mnist")
    split = threat_model_split(data, attacker_fraction=Settings().attacker_fraction, seed=0)
    for attack in attack_suite(Settings(), data.num_classes):
        if attack.name != "extract":
            continue
        attack = replace(attack, seed=0)
        # an attack seeds its own run (Attack.__call__), so the copy is the study's
        copy = attack(models["from-scratch"], split.attacker_data, monitor=None)
        models[attack.describe()] = copy.eval()
    pools = {
        "natural": data.test_x,
        "shifted": shifted(data.test_x, torch.arange(len(data.test_x) * len(SHIFTS))),
    }
    print("| model | " + " | ".join(f"{k} rate | {k} p" for k in pools) + " |")
    print("|---|" + "---|---|" * len(pools))
    said = {k: {n: answers(m, x, num_classes=None) for n, m in models.items()} for k, x in pools.items()}
    for name in models:
        if name == "from-scratch":
            continue
        cells = []
        for seen in said.values():
            others = [seen[s] for s in SIBLINGS if s != name]
            r, share = over_pool(seen["from-scratch"], others, seen[name])
            cells.append(f"{r:.3f} | {p_value(r, share):.2g}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
