"""A suite of attacks on one trial: the model measured once, then every attack on the unchanged original.

from backmark.study import Trial, run_attacks, threat_model_split
split = threat_model_split(data)                       # attacker 1/3, owner 2/3, seeded
trial = Trial(marked, mk, vk, split.attacker_data, (data.test_x, data.test_y))
baseline, outcomes = run_attacks(trial, attacks)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from backmark.attacks import Attack
from backmark.log import Log, say
from backmark.study.measure import AttackOutcome, Baseline, Trial, measure, run_attack
from backmark.study.parallel import run_in_workers


def run_attacks(
    trial: Trial,
    attacks: Sequence[Attack],
    *,
    log: Log | None = None,
    workers: int = 1,
) -> tuple[Baseline, list[AttackOutcome]]:
    """Measure the trial's model, then run every attack on it (each on the unchanged original) and measure.

    ``workers`` > 1 runs the attacks in that many processes, each on its share of the cores, with the
    same outcomes as a serial run (times aside; :mod:`backmark.study.parallel`).
    """
    baseline = measure(trial)
    outcomes = []
    if workers > 1 and len(attacks) > 1:
        results: Iterable[AttackOutcome] = run_in_workers(trial, attacks, baseline=baseline, workers=workers)
    else:
        results = (run_attack(trial, a, baseline=baseline) for a in attacks)
    for i, outcome in enumerate(results, 1):
        outcomes.append(outcome)
        e, claim = outcome.evidence, outcome.claim
        verdict = "REMOVED" if outcome.removed else "verified" if outcome.verified else "not verified"
        shown = ""
        if claim is not None:
            by = ", ".join(claim.passed) or "no piece"
            shown = f"; ownership {'shown' if claim.verified else 'NOT shown'} ({by})"
        say(
            log,
            f"[{i}/{len(attacks)}] {outcome.label}: test acc {outcome.test_acc_before:.2%} -> "
            f"{outcome.test_acc_after:.2%}, triggers {e.matches}/{e.n}, p {e.p_value:.2g}: {verdict}"
            f"{shown} ({outcome.seconds:.0f} s)",
        )
    return baseline, outcomes


__all__ = ["run_attacks"]
