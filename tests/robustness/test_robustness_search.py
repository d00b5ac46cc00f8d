"""The adaptive attacker's search: the strongest setting of a knob within the accuracy budget."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from types import MappingProxyType

import pytest
import torch
from torch import nn

from backmark.attacks import AttackData
from backmark.embed import Trained
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, VerificationKey
from backmark.robustness import Baseline, ThreatSplit, measure, run_attack
from backmark.robustness.search import SEARCHES, Knob, search_all, strongest_within_budget

Pair = tuple[torch.Tensor, torch.Tensor]
SPARSITIES = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999)


@dataclass(frozen=True)
class Scene:
    """The marked model, its key, the attacker's data, the test set and the unattacked baseline."""

    model: nn.Module
    key: MarkingKey
    vk: VerificationKey
    attacker: AttackData
    test: Pair
    baseline: Baseline

    def inputs(self) -> tuple[nn.Module, MarkingKey, VerificationKey, AttackData, Pair]:
        return self.model, self.key, self.vk, self.attacker, self.test


@pytest.fixture
def scene(marked: Trained, key: MarkingKey, split: ThreatSplit) -> Scene:
    test = (split.owner.test_x, split.owner.test_y)
    vk = key.verification_key()
    return Scene(marked.model, key, vk, split.attacker_data, test, measure(marked.model, key, vk, test))


def test_bisection_finds_the_strongest_value_within_budget(scene: Scene) -> None:
    knob = Knob("prune", "sparsity", SPARSITIES)
    lines: list[str] = []
    model, key, vk, attacker, test = scene.inputs()
    baseline = scene.baseline
    found = strongest_within_budget(
        model, knob, key, vk, attacker, test, baseline=baseline, max_drop=0.05, log=lines.append
    )
    assert len(found.tried) <= math.ceil(math.log2(len(SPARSITIES) + 1)) and len(lines) == len(found.tried)
    drops = {
        v: baseline.test_acc
        - run_attack(model, knob.build(v), key, vk, attacker, test, baseline=baseline).test_acc_after
        for v in SPARSITIES
    }
    within = [v for v in SPARSITIES if drops[v] <= 0.05 + 1e-12]
    monotone = all(drops[a] <= drops[b] + 1e-12 for a, b in itertools.pairwise(SPARSITIES))
    assert 0.1 in within and 0.999 not in within  # the range spans harmless to ruinous
    if monotone:
        assert found.strongest_value == max(within)
    assert found.strongest_value in within
    strongest = found.strongest
    assert strongest is not None and strongest.params["sparsity"] == found.strongest_value
    doc = found.to_dict()
    assert doc["strongest_value"] == found.strongest_value and len(doc["tried"]) == len(found.tried)
    assert doc["removed"] == any(o.removed for _, o in found.tried)


def test_nothing_within_a_budget_no_setting_meets(scene: Scene) -> None:
    knob = Knob("prune", "sparsity", (0.99, 0.999))
    [found] = search_all(scene.model, [knob], *scene.inputs()[1:], baseline=scene.baseline, max_drop=0.001)
    assert found.strongest_value is None and found.strongest is None and not found.removed


def test_a_setting_run_before_is_reused_not_run_again(scene: Scene) -> None:
    knob = Knob("prune", "sparsity", (0.1, 0.5, 0.999), MappingProxyType({"seed": 3}))
    ran = run_attack(scene.model, knob.build(0.5), *scene.inputs()[1:], baseline=scene.baseline)
    planted = replace(ran, seconds=-1.0)  # a mark no fresh run can carry
    other = knob.build(0.5)
    lines: list[str] = []
    [found] = search_all(
        scene.model,
        [knob],
        *scene.inputs()[1:],
        baseline=scene.baseline,
        log=lines.append,
        known={replace(other, seed=4): ran, other: planted},  # another seed is another attack
    )
    assert found.tried[0][0] == 0.5 and found.tried[0][1] is planted
    assert all(o.seconds >= 0 for _, o in found.tried[1:]) and len(found.tried) == 2
    assert "(run before, reused)" in lines[1] and "reused" not in lines[2]


def test_every_registered_search_is_valid_and_ordered() -> None:
    names = {k.attack for k in SEARCHES}
    assert {"ft-large-lr", "prune", "quantize", "noise", "ood-detector", "overwrite"} <= names
    for knob in SEARCHES:
        assert len(set(knob.values)) == len(knob.values) >= 4
        assert knob.attack in knob.describe()


@pytest.mark.parametrize(
    ("attack", "option", "values", "message"),
    [
        ("prune", "sparsity", (0.5, 1.5), "sparsity"),
        ("prune", "sparsity", (), "at least one value"),
        ("prune", "width", (0.5,), "width"),
        ("nope", "x", (1,), "nope"),
    ],
)
def test_bad_knobs_are_refused_when_made(
    attack: str, option: str, values: tuple[float, ...], message: str
) -> None:
    with pytest.raises(BackmarkError, match=message):
        Knob(attack, option, values, MappingProxyType({}))
