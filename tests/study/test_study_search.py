"""The adaptive attacker's search: the strongest setting of a knob within the accuracy budget."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from types import MappingProxyType

import pytest

from backmark.embed import Trained
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey
from backmark.study import Baseline, ThreatSplit, Trial, measure, run_attack
from backmark.study.search import SEARCHES, Knob, search_all, strongest_within_budget

SPARSITIES = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999)


@dataclass(frozen=True)
class Scene:
    """The trial (marked model, key pair, attacker's data, test set) and its unattacked baseline."""

    trial: Trial
    baseline: Baseline


@pytest.fixture
def scene(marked: Trained, key: MarkingKey, split: ThreatSplit) -> Scene:
    test = (split.owner.test_x, split.owner.test_y)
    trial = Trial(marked.model, key, key.verification_key(), split.attacker_data, test)
    return Scene(trial, measure(trial))


def test_bisection_finds_the_strongest_value_within_budget(scene: Scene) -> None:
    knob = Knob("prune", "sparsity", SPARSITIES)
    lines: list[str] = []
    baseline = scene.baseline
    found = strongest_within_budget(scene.trial, knob, baseline=baseline, log=lines.append)  # max_drop 0.05
    assert len(found.tried) <= math.ceil(math.log2(len(SPARSITIES) + 1)) and len(lines) == len(found.tried)
    drops = {
        v: baseline.test_acc - run_attack(scene.trial, knob.build(v), baseline=baseline).test_acc_after
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
    strict = replace(scene.trial, max_drop=0.001)
    [found] = search_all(strict, [knob], baseline=scene.baseline)
    assert found.strongest_value is None and found.strongest is None and not found.removed


def test_a_setting_run_before_is_reused_not_run_again(scene: Scene) -> None:
    knob = Knob("prune", "sparsity", (0.1, 0.5, 0.999), MappingProxyType({"seed": 3}))
    ran = run_attack(scene.trial, knob.build(0.5), baseline=scene.baseline)
    planted = replace(ran, seconds=-1.0)  # a mark no fresh run can carry
    other = knob.build(0.5)
    lines: list[str] = []
    [found] = search_all(
        scene.trial,
        [knob],
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
