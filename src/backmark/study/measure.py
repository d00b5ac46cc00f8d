"""How an attack is measured: the one place that turns a model, a key and data into evidence.

Every study (``backmark attack``, ``backmark reproduce``, the adaptive search, the benchmarks) measures
an attack here: a :class:`Trial` (the marked model, its key pair, the attacker's data, the test set: the
five inputs travel together), :func:`measure` for the model before any attack (a :class:`Baseline`),
:func:`run_attack` for one attack (an :class:`AttackOutcome`), the one accuracy budget
(:data:`MAX_ACC_DROP`, :func:`within_budget`) and the one removal rule (:func:`is_removal`).

For every attack: test accuracy before and after, the trigger match rate, exact p-value and verdict of the
attacked model's top-1 answers (what a verifier sees), the label-free test's evidence from the same
answers (docs/label-free.md), the attack's wall time, and whether it is a
successful removal in the benchmark's sense: the trigger mark's claim (either test, each at alpha / 2:
``verify``'s default) fails while at most ``max_drop`` (5 points) of test accuracy is lost. Where the
trial asks for them, the lineage and contrast tests join the claim (:func:`full_claim`): whether
ownership is still shown by any evidence, at the same family-wise ``alpha``. Attacks that replace the
output layer also get the reference code's figure, with the original output layer swapped back in; that
needs the suspect's weights, so it is NOT black-box verification and is kept in a field of its own.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from backmark.attacks import Attack, AttackData, output_layer, output_layer_name
from backmark.attacks.base import set_submodule
from backmark.claim import claim_level, contrast_piece, lineage_piece, trigger_claim
from backmark.constants import CONTRAST_DELTA, DEFAULT_VERIFY_TEST, VerifyTest
from backmark.contrast import Prepared
from backmark.contrast import decide as contrast_decide
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, VerificationKey
from backmark.lineage import lineage_test
from backmark.response.claim import response_piece
from backmark.response.verify import ResponseEvidence
from backmark.training import accuracy
from backmark.verify import DEFAULT_ALPHA, Evidence, trigger_accuracy, verify
from backmark.verify.decision import Decision, Piece
from backmark.verify.labelfree import TestedVerification, mark_decision, verify_tests

MAX_ACC_DROP = 0.05  # the benchmark's cost bound (the SoK's): at most 5 points of test accuracy lost
MARK_TEST: VerifyTest = DEFAULT_VERIFY_TEST  # the trigger mark's claim: either test, each at alpha / 2


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
    lineage: bool = False  # also test each attacked model's weights against the marked model's
    contrast: Prepared | None = None  # the owner's siblings and probes: also the contrast test
    delta: float = CONTRAST_DELTA  # the contrast test's margin


def within_budget(test_acc_before: float, test_acc_after: float, max_drop: float = MAX_ACC_DROP) -> bool:
    """Whether an attack that took test accuracy from ``before`` to ``after`` cost at most ``max_drop``."""
    return test_acc_before - test_acc_after <= max_drop + 1e-12


def is_removal(
    baseline: Baseline,
    *,
    verified_after: bool,
    test_acc_after: float,
    changes_task: bool,
    max_drop: float,
) -> bool:
    """The removal rule: the trigger mark's claim (:data:`MARK_TEST`) verified the model before the
    attack and not after it, and the attack stayed within the budget (for a change of task, where
    accuracies are on different tasks, not verified suffices)."""
    cheap = changes_task or within_budget(baseline.test_acc, test_acc_after, max_drop)
    return baseline.verified and not verified_after and cheap


@dataclass(frozen=True)
class EpochPoint:
    """Test accuracy and trigger match rate after ``epoch`` epochs of an attack (0: before it)."""

    epoch: int
    test_acc: float
    match_rate: float


class _MarkClaim:
    """The trigger mark's claim of a measured model: the labels or the label-free test, each at its
    evidence's level (alpha / 2)."""

    evidence: Evidence
    label_free: Evidence | None

    @property
    def mark(self) -> Decision:
        return mark_decision(
            MARK_TEST if self.label_free is not None else "labels", self.evidence, self.label_free
        )

    @property
    def verified(self) -> bool:
        return self.mark.verified


@dataclass(frozen=True)
class AttackOutcome(_MarkClaim):
    """One attack on one model, measured.

    ``removed`` is True when the model was verified before the attack, the attacked model is not, and at
    most ``MAX_ACC_DROP`` of test accuracy was lost (for a change of task, where accuracies are on
    different tasks, not verified suffices).
    ``head_swapped`` is the reference code's evidence with the original output layer put back: not
    black-box, reported only beside the black-box figures. ``evidence`` (the labels test) and
    ``label_free`` (the label-free test on the same answers, docs/label-free.md) are each decided at
    alpha / 2: the trigger mark's claim (:attr:`verified`) is either of them. ``claim`` adds the lineage
    and contrast tests where the trial asks for them (:func:`full_claim`); :attr:`shown` is its verdict.
    """

    attack: str
    label: str
    params: Mapping[str, Any]  # read-only
    access: str
    task: str
    test_acc_before: float
    test_acc_after: float
    evidence: Evidence  # black-box: the labels test of the attacked model's top-1 answers, at alpha / 2
    removed: bool  # the trigger mark's claim (either test) fails within the budget
    seconds: float
    history: tuple[EpochPoint, ...]
    head_swapped: Evidence | None
    label_free: Evidence | None = None  # the label-free test on the same answers, at alpha / 2
    claim: Decision | None = None  # every piece of evidence the trial asks for (None: the mark's only)

    @property
    def shown(self) -> bool:
        """Ownership shown by some piece of evidence the trial asked for, at its alpha (family-wise)."""
        return self.claim.verified if self.claim is not None else self.verified

    @property
    def acc_drop(self) -> float:
        return self.test_acc_before - self.test_acc_after

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready entry of ``report.json``: the attack, then the trigger mark's claim on top
        (``verified``, ``alpha``, ``p_value``, each test's figures under its own name in ``evidence``:
        :meth:`backmark.verify.decision.Decision.to_dict`), the removal, and ``claim``/``shown``: every
        piece of evidence the study asked for."""
        return {
            "attack": self.attack,
            "label": self.label,
            "params": dict(self.params),
            "access": self.access,
            "task": self.task,
            "test_acc_before": self.test_acc_before,
            "test_acc_after": self.test_acc_after,
            **self.mark.to_dict(),
            "removed": self.removed,
            "shown": self.shown,
            "claim": None if self.claim is None else self.claim.to_dict(),
            "seconds": self.seconds,
            "history": [asdict(p) for p in self.history],
            "head_swapped": None if self.head_swapped is None else self.head_swapped.to_dict(),
        }


@dataclass(frozen=True)
class Baseline(_MarkClaim):
    """The marked model before any attack; ``label_free``: the label-free test on the same answers."""

    test_acc: float
    evidence: Evidence
    label_free: Evidence | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"test_acc": self.test_acc, **self.mark.to_dict()}


def measure(trial: Trial) -> Baseline:
    """Test accuracy of the trial's model and its black-box watermark evidence (both tests)."""
    tested = verify_tests(trial.model, trial.mk, trial.vk, test=MARK_TEST, alpha=trial.alpha)
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
        tested = verify_tests(attacked, mk, vk, test=MARK_TEST, alpha=alpha)  # one query, both tests
        evidence = tested.labels.evidence
        swapped = None
        if attack.replaces_head:
            swapped = verify(swap_head_back(attacked, model), mk, vk, alpha=alpha).evidence
        claim = full_claim(trial, attacked, tested, changes_task=attack.changes_task)
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
            baseline,
            verified_after=tested.verified,
            test_acc_after=after,
            changes_task=attack.changes_task,
            max_drop=trial.max_drop,
        ),
        seconds=seconds,
        history=tuple(history),
        head_swapped=swapped,
        label_free=tested.label_free,
        claim=claim,
    )


def full_claim(
    trial: Trial,
    suspect: nn.Module,
    tested: TestedVerification,
    *,
    changes_task: bool,
    response: ResponseEvidence | None = None,
) -> Decision | None:
    """The claim from every piece of evidence ``trial`` asks for (None when it asks for the trigger
    mark's alone): the labels and label-free tests, the lineage test where the suspect's layers pair
    with the marked model's, the contrast test where the suspect still answers the original task. Each
    piece is decided at ``alpha / k`` for the ``k`` pieces that apply to this suspect (which apply
    depends on its form only, never on a p-value). ``response``: the response mark's evidence, one more
    piece (a copy made through the serving API)."""
    if not trial.lineage and trial.contrast is None and response is None:
        return None
    extra: list[Piece] = []
    if trial.lineage:
        try:
            lin = lineage_test(
                owner=trial.model,
                suspect=_weights_of(trial.model, suspect),
                input_shape=trial.mk.input_shape,
                test="exact",
            )
        except BackmarkError:  # another architecture (extraction into a ResNet): no pairing of layers
            lin = None
        if lin is not None:
            extra.append(lineage_piece(lin))
    if trial.contrast is not None and not changes_task:
        result = contrast_decide(suspect, trial.contrast, delta=trial.delta)
        extra.append(contrast_piece(result, siblings_digest=""))
    level = claim_level(MARK_TEST, trial.alpha, extra=len(extra) + (response is not None))
    at_level = [replace(p, verified=p.log10_p <= math.log10(level)) for p in extra]
    if response is not None:
        at_level.insert(0, response_piece(response, level=level))
    return trigger_claim(tested, extra=at_level)


def _weights_of(owner: nn.Module, suspect: nn.Module) -> nn.Module:
    """The part of ``suspect`` whose parameters carry the owner's names: the suspect itself, or the first
    submodule that does (a model wrapped by an inference-time defence, a member of an ensemble). A
    verifier holding the suspect's weights holds these too."""
    names = set(owner.state_dict())
    return next((m for _, m in suspect.named_modules() if set(m.state_dict()) == names), suspect)


def innocent_claim(trial: Trial, model: nn.Module) -> Decision | None:
    """The claim against ``model``, a model made without the trial's (an innocent suspect): every piece
    the trial asks for, as :func:`full_claim` decides it for an attacked model. None when the trial asks
    for the trigger mark alone."""
    tested = verify_tests(model, trial.mk, trial.vk, test=MARK_TEST, alpha=trial.alpha)
    return full_claim(trial, model, tested, changes_task=False)


def study_nonce(seed: int) -> bytes:
    """The contrast probes' nonce of a study with ``seed``: fixed before any attack runs, and never shown
    to an attack, so every attacked model is fixed before its probes are known to it (reproducible)."""
    return hashlib.sha256(f"backmark/study-contrast/{seed}".encode()).digest()


def _task_name(attack: Attack) -> str:
    if not attack.changes_task:
        return "original"
    return f"new task: classes {attack.params().get('classes')} relabelled from 0"
