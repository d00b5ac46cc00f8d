"""An honest robustness evaluation: the threat-model split, running attacks, reports and the reproduction.

    from backmark.robustness import threat_model_split, run_attacks
    split = threat_model_split(data)                       # attacker 1/3, owner 2/3, seeded
    baseline, outcomes = run_attacks(marked, attacks, mk, vk, split.attacker_data, (data.test_x, data.test_y))

Every figure is black-box (the attacked model's top-1 answers, exact binomial test:
:class:`backmark.verify.Evidence`) except the one field
that says otherwise (:attr:`AttackOutcome.head_swapped`, the reference code's way of measuring RTLL/RTAL).
"""

from backmark.robustness.evaluate import (
    MAX_ACC_DROP,
    AttackOutcome,
    Baseline,
    EpochPoint,
    measure,
    run_attack,
    run_attacks,
    swap_head_back,
)
from backmark.robustness.report import AttackReport, build_report, write_report
from backmark.robustness.reproduce import Reproduction, Settings, attack_suite, pretrained_suite, reproduce
from backmark.robustness.session import attack_checkpoint
from backmark.robustness.split import ATTACKER_FRACTION, ThreatSplit, threat_model_split

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
    "attack_checkpoint",
    "attack_suite",
    "build_report",
    "measure",
    "pretrained_suite",
    "reproduce",
    "run_attack",
    "run_attacks",
    "swap_head_back",
    "threat_model_split",
    "write_report",
]
