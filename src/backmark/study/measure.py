"""How an attack is measured: the one place that turns a model, a key and data into evidence.

Every study (``backmark attack``, ``backmark reproduce``, the adaptive search, the benchmarks) measures
an attack here: a :class:`Trial` (the marked model, its key pair, the attacker's data, the test set: the
five inputs travel together), :func:`measure` for the model before any attack (a :class:`Baseline`),
:func:`run_attack` for one attack (an :class:`AttackOutcome`), the one accuracy budget
(:data:`MAX_ACC_DROP`, :func:`within_budget`) and the one removal rule (:func:`is_removal`).

For every attack: test accuracy before and after, the trigger match rate, exact p-value and verdict of the
attacked model's top-1 answers (what a verifier sees), the label-free test's evidence from the same
answers (docs/label-free.md), the attack's wall time, and whether it is a
successful removal in the benchmark's sense: evidence below the threshold at ``alpha`` while at most
``max_drop`` (5 points) of test accuracy is lost. Attacks that replace the output layer also get the
reference code's figure, with the original output layer swapped back in; that needs the suspect's weights,
so it is NOT black-box verification and is kept in a field of its own.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from backmark.attacks import Attack, AttackData, output_layer, output_layer_name
from backmark.attacks.base import set_submodule
from backmark.keys import MarkingKey, VerificationKey
from backmark.training import accuracy
from backmark.verify import DEFAULT_ALPHA, Evidence, trigger_accuracy, verify
from backmark.verify.labelfree import verify_tests

MAX_ACC_DROP = 0.05  # the benchmark's cost bound (the SoK's): at most 5 points of test accuracy lost


@dataclass(frozen=True)
class Trial:
    """What every attack of a study is run against, and the rules it is measured by.

    ``model``: the marked model (never changed: each attack gets it unchanged); ``mk``, ``vk``: its key
    pair; ``attacker``: the attacker's data; ``test``: uint8 test images and their labels; ``alpha``: the
    level of the verifications; ``max_drop``: the accuracy budget of a removal.
    """

    model: nn.Module
    mk: MarkingKey
    vk: VerificationKey
    attacker: AttackData
    test: tuple[torch.Tensor, torch.Tensor]
    alpha: float = DEFAULT_ALPHA
    max_drop: float = MAX_ACC_DROP


def within_budget(test_acc_before: float, test_acc_after: float, max_drop: float = MAX_ACC_DROP) -> bool:
    """Whether an attack that took test accuracy from ``before`` to ``after`` cost at most ``max_drop``."""
    return test_acc_before - test_acc_after <= max_drop + 1e-12


def is_removal(
    baseline: Baseline, after: Evidence, test_acc_after: float, *, changes_task: bool, max_drop: float
) -> bool:
    """The removal rule: the model verified before the attack, the attacked one does not, and the attack
    stayed within the budget (for a change of task, where accuracies are on different tasks, not verified
    suffices)."""
    cheap = changes_task or within_budget(baseline.test_acc, test_acc_after, max_drop)
    return baseline.evidence.verified and not after.verified and cheap


@dataclass(frozen=True)
class EpochPoint:
    """Test accuracy and trigger match rate after ``epoch`` epochs of an attack (0: before it)."""

    epoch: int
    test_acc: float
    match_rate: float


@dataclass(frozen=True)
class AttackOutcome:
    """One attack on one model, measured.

    ``removed`` is True when the model was verified before the attack, the attacked model is not, and at
    most ``MAX_ACC_DROP`` of test accuracy was lost (for a change of task, where accuracies are on
    different tasks, not verified suffices).
    ``head_swapped`` is the reference code's evidence with the original output layer put back: not
    black-box, reported only beside the black-box figures. ``label_free`` is the label-free test's
    evidence from the same answers as ``evidence`` (docs/label-free.md); reported, it does not enter
    ``removed``.
    """

    attack: str
    label: str
    params: Mapping[str, Any]  # read-only
    access: str
    task: str
    test_acc_before: float
    test_acc_after: float
    evidence: Evidence  # black-box: the attacked model's top-1 answers
    removed: bool
    seconds: float
    history: tuple[EpochPoint, ...]
    head_swapped: Evidence | None
    label_free: Evidence | None = None

    @property
    def acc_drop(self) -> float:
        return self.test_acc_before - self.test_acc_after

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON-ready entry of ``report.json``: the evidence's fields beside the attack's."""
        return {
            "attack": self.attack,
            "label": self.label,
            "params": dict(self.params),
            "access": self.access,
            "task": self.task,
            "test_acc_before": self.test_acc_before,
            "test_acc_after": self.test_acc_after,
            **self.evidence.to_dict(),
            "removed": self.removed,
            "seconds": self.seconds,
            "history": [asdict(p) for p in self.history],
            "head_swapped": None if self.head_swapped is None else self.head_swapped.to_dict(),
            "label_free": None if self.label_free is None else self.label_free.to_dict(),
        }


@dataclass(frozen=True)
class Baseline:
    """The marked model before any attack; ``label_free``: the label-free test on the same answers."""

    test_acc: float
    evidence: Evidence
    label_free: Evidence | None = None

    def to_dict(self) -> dict[str, Any]:
        free = None if self.label_free is None else self.label_free.to_dict()
        return {"test_acc": self.test_acc, "evidence": self.evidence.to_dict(), "label_free": free}


def measure(trial: Trial) -> Baseline:
    """Test accuracy of the trial's model and its black-box watermark evidence (both tests)."""
    tested = verify_tests(trial.model, trial.mk, trial.vk, test="labels", alpha=trial.alpha)
    return Baseline(accuracy(trial.model, *trial.test), tested.labels.evidence, tested.label_free)


def swap_head_back(attacked: nn.Module, original: nn.Module) -> nn.Module:
    """A copy of ``attacked`` with ``original``'s output layer in place of its own (reference code)."""
    swapped = copy.deepcopy(attacked)
    set_submodule(swapped, output_layer_name(swapped), copy.deepcopy(output_layer(original)))
    return swapped


def run_attack(trial: Trial, attack: Attack, *, baseline: Baseline) -> AttackOutcome:
    """Attack the trial's model once and measure the result (see :class:`AttackOutcome`)."""
    return attack_and_measure(trial, attack, baseline=baseline)[1]


def attack_and_measure(
    trial: Trial, attack: Attack, *, baseline: Baseline
) -> tuple[nn.Module, AttackOutcome]:
    """:func:`run_attack`, with the attacked model (for a study that asks it more than the owner's key)."""
    model, mk, vk, test, alpha = trial.model, trial.mk, trial.vk, trial.test, trial.alpha
    task_test = attack.task(*test)
    history: list[EpochPoint] = []
    if not (attack.changes_task or attack.starts_fresh):  # the attacked model starts as the marked one
        history.append(EpochPoint(0, baseline.test_acc, baseline.evidence.match_rate))
    monitor_seconds = 0.0

    def monitor(epoch: int, current: nn.Module) -> None:
        nonlocal monitor_seconds
        start = time.perf_counter()
        history.append(EpochPoint(epoch, accuracy(current, *task_test), trigger_accuracy(current, mk)))
        monitor_seconds += time.perf_counter() - start

    # Randomness at query time (input noise, a detector's random answers) comes from the global generator:
    # seeded here by the attack, so an outcome does not depend on what ran before it (or in which process)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(attack.seed)
        start = time.perf_counter()
        attacked = attack(model, trial.attacker, monitor=monitor if attack.trains else None)
        seconds = time.perf_counter() - start - monitor_seconds
        after = accuracy(attacked, *task_test)
        tested = verify_tests(attacked, mk, vk, test="labels", alpha=alpha)  # one query, both tests
        evidence = tested.labels.evidence
        swapped = None
        if attack.replaces_head:
            swapped = verify(swap_head_back(attacked, model), mk, vk, alpha=alpha).evidence
    return attacked, AttackOutcome(
        attack=attack.name,
        label=attack.describe(),
        params=MappingProxyType(attack.params()),
        access=attack.access,
        task=_task_name(attack),
        test_acc_before=baseline.test_acc,
        test_acc_after=after,
        evidence=evidence,
        removed=is_removal(
            baseline, evidence, after, changes_task=attack.changes_task, max_drop=trial.max_drop
        ),
        seconds=seconds,
        history=tuple(history),
        head_swapped=swapped,
        label_free=tested.label_free,
    )


def _task_name(attack: Attack) -> str:
    if not attack.changes_task:
        return "original"
    return f"new task: classes {attack.params().get('classes')} relabelled from 0"
