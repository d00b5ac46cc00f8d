"""Experiments: how a marked model fares against attacks, measured one way, and the reports of it.

One measurement pipeline (:mod:`backmark.study.measure`: a :class:`Trial` in, a :class:`Baseline` and an
:class:`AttackOutcome` per attack out, one accuracy budget, one removal rule), run as a suite
(:mod:`~backmark.study.suite`, in parallel workers with :mod:`~backmark.study.parallel`), searched for the
strongest attack within the budget (:mod:`~backmark.study.search`), and reported: ``backmark attack``
(:mod:`~backmark.study.session`, :mod:`~backmark.study.attack_report`), ``backmark reproduce``
(:mod:`~backmark.study.reproduce`, :mod:`~backmark.study.reproduce_report`, with the response-mark study of
:mod:`~backmark.study.response_study` over :mod:`~backmark.study.api_extraction`), and ``backmark demo``
(:mod:`~backmark.study.demo`). The owner's models (:mod:`~backmark.study.owner`) and the threat-model split
(:mod:`~backmark.study.split`) are shared by all of them and by the benchmarks.

    from backmark.study import Trial, run_attacks, threat_model_split
    split = threat_model_split(data)                       # attacker 1/3, owner 2/3, seeded
    trial = Trial(marked, mk, vk, split.attacker_data, (data.test_x, data.test_y))
    baseline, outcomes = run_attacks(trial, attacks)

Every figure is black-box (the attacked model's top-1 answers, exact binomial test:
:class:`backmark.verify.Evidence`) except the one field that says otherwise
(:attr:`AttackOutcome.head_swapped`, the reference code's way of measuring RTLL/RTAL).
"""

from backmark.study.attack_report import AttackReport, build_report, write_report
from backmark.study.measure import (
    MAX_ACC_DROP,
    AttackOutcome,
    Baseline,
    EpochPoint,
    Trial,
    is_removal,
    measure,
    run_attack,
    swap_head_back,
    within_budget,
)
from backmark.study.reproduce import Reproduction, Settings, attack_suite, pretrained_suite, reproduce
from backmark.study.session import attack_checkpoint
from backmark.study.split import ATTACKER_FRACTION, ThreatSplit, threat_model_split
from backmark.study.suite import run_attacks

__all__ = [
    "ATTACKER_FRACTION",
    "MAX_ACC_DROP",
    "AttackOutcome",
    "AttackReport",
    "Baseline",
    "EpochPoint",
    "Reproduction",
    "Settings",
    "ThreatSplit",
    "Trial",
    "attack_checkpoint",
    "attack_suite",
    "build_report",
    "is_removal",
    "measure",
    "pretrained_suite",
    "reproduce",
    "run_attack",
    "run_attacks",
    "swap_head_back",
    "threat_model_split",
    "within_budget",
    "write_report",
]
