"""Tests generated from the registry: every attack, present and future, is held to the same contract."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
from attack_helpers import quick, snapshot, tiny_cnn
from torch import nn

from backmark.attacks import (
    Attack,
    AttackData,
    attack_names,
    create_attack,
    get_attack,
    list_attacks,
    register_attack,
)
from backmark.errors import BackmarkError

NAMES = attack_names()
X = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(3))


@dataclass(frozen=True)
class Attacked:
    """One run of an attack on a fresh tiny model left in train mode, and what the model was before."""

    attack: Attack
    before: dict[str, bytes]  # the input model's bytes before the attack
    model: nn.Module  # the input model, after the attack
    result: nn.Module
    modes: list[bool]  # the input's training flags after the attack


@pytest.fixture(scope="module", params=NAMES)
def attacked(request: pytest.FixtureRequest, data: AttackData) -> Attacked:
    """Each registered attack, run once for the tests of this module that ask for it."""
    model = tiny_cnn().train()
    before = snapshot(model)
    attack = quick(request.param)
    result = attack(model, data)
    return Attacked(attack, before, model, result, [m.training for m in model.modules()])


def test_the_registry_holds_every_family() -> None:
    expected = {"ftll", "ftal", "rtll", "rtal", "ft-large-lr", "transfer", "prune", "fine-prune", "quantize"}
    expected |= {"extract", "jpeg", "noise", "smooth", "input-quantize", "ood-detector", "ensemble"}
    expected |= {"overwrite", "rekey", "unlearn"}  # the scheme-aware ones
    expected |= {"weight-shift", "regularize", "distill", "adv-train", "launder"}  # the rest of the SoK's
    assert expected <= set(NAMES)
    for info in list_attacks():
        assert info.access in ("weights", "labels") and info.summary
        assert (
            info.cls.__doc__ is not None and "Arguments:" in info.cls.__doc__ and "Shape:" in info.cls.__doc__
        )
    assert {i.name for i in list_attacks() if i.access == "labels"} == {"extract"}


@pytest.mark.parametrize("name", NAMES)
def test_the_decorator_names_the_class(name: str) -> None:
    info = get_attack(f" {name.upper()} ")  # as the command line may write it
    assert info.name == info.cls.name == create_attack(name).name == name
    with pytest.raises(ValueError, match="registered twice"):
        register_attack(name)(info.cls)
    assert get_attack(name) == info


def test_returns_a_new_module_in_eval_mode(attacked: Attacked) -> None:
    model, result = attacked.model, attacked.result
    assert isinstance(result, nn.Module) and result is not model
    assert not result.training and not any(m.training for m in result.modules())
    inputs = {p.data_ptr() for p in model.parameters()}
    assert not any(p.data_ptr() in inputs for p in result.parameters()), "shares storage with the input"


def test_leaves_the_input_model_byte_identical(attacked: Attacked) -> None:
    assert snapshot(attacked.model) == attacked.before
    assert all(attacked.modes), "the input's training flags were not restored"


def test_keeps_the_output_shape(attacked: Attacked) -> None:
    attack, model, result = attacked.attack, attacked.model, attacked.result
    with torch.no_grad():
        out = result(X)
        expected = model.eval()(X).shape
    if attack.changes_task:  # transfer learning: one output per class of the new task
        assert out.shape == (len(X), len(attack.task(torch.arange(10), torch.arange(10))[1]))
    else:
        assert out.shape == expected
    assert torch.isfinite(out).all() or attack.name == "ensemble"


@pytest.mark.parametrize("name", NAMES)
def test_is_configured_when_built_and_round_trips_its_params(name: str) -> None:
    attack = create_attack(name)
    assert attack.name == name
    assert create_attack(name, **attack.params()) == attack
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"cannot assign"):
        attack.seed = 5  # type: ignore[misc]


def test_unknown_names_and_options_list_what_is_valid() -> None:
    listed = "unknown attack 'nope'; choose from: adv-train, distill, ensemble, extract"
    with pytest.raises(BackmarkError, match=listed) as err:
        create_attack("nope")
    assert "\n" not in str(err.value)
    with pytest.raises(BackmarkError, match="has no option 'rate'; its options: seed, epochs, lr"):
        create_attack("ftal", rate=0.1)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("ftal", {"epochs": 0}, "epochs must lie in 1..1000"),
        ("rtll", {"lr": -1.0}, "lr must lie in"),
        ("prune", {"sparsity": 1.0}, "sparsity must lie in"),
        ("quantize", {"bits": 0}, "bits must lie in 1..16"),
        ("quantize", {"bits": 2.5}, r"bits must be an integer in 1\.\.16, got 2\.5"),
        ("prune", {"sparsity": float("nan")}, r"sparsity must lie in \[0, 1\), got nan"),
        ("ood-detector", {"answer": "third"}, "answer must be one of random, second, got 'third'"),
        ("jpeg", {"quality": 101}, "quality must lie in 1..100"),
        ("transfer", {"classes": "7"}, "at least 2 distinct classes"),
        ("extract", {"arch": "vgg"}, "arch must be same or one of cnn, preact-resnet18"),
        ("ood-detector", {"quantile": 1.0}, "quantile must lie in"),
        ("ft-large-lr", {"schedule": "linear"}, "schedule must be one of constant, step, cosine, onecycle"),
        ("weight-shift", {"shift": 0.0}, "weight-shift: shift must lie in"),
        ("weight-shift", {"keep": -1.0}, "weight-shift: keep must lie in"),
        ("regularize", {"decay": 0.0}, "regularize: decay must lie in"),
        ("regularize", {"finetune_epochs": -1}, "regularize: finetune_epochs must lie in 0..1000"),
        ("distill", {"temperature": 0.0}, "distill: temperature must lie in"),
        ("distill", {"arch": "same", "width": 8}, "distill: width needs a named arch"),
        ("adv-train", {"eps": 2.0}, "adv-train: eps must lie in"),
        ("adv-train", {"steps": 0}, "adv-train: steps must lie in 1..100"),
        ("launder", {"fraction": 1.5}, "launder: fraction must lie in"),
        ("launder", {"steps": 0}, "launder: steps must lie in 1..10000"),
        ("launder", {"probe": 1}, "launder: probe must lie in 2..100000"),
    ],
)
def test_options_out_of_range_are_one_line_errors(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(BackmarkError, match=message) as err:
        create_attack(name, **params)
    assert type(err.value) is BackmarkError and "\n" not in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_data_that_does_not_fit_the_model_is_a_one_line_error(name: str, data: AttackData) -> None:
    model = tiny_cnn()
    small = AttackData(torch.zeros(4, 1, 12, 12, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), 10)
    with pytest.raises(BackmarkError, match="cannot take the attacker's 1x12x12 images") as err:
        quick(name)(model, small)
    assert "\n" not in str(err.value)
    if name != "transfer":  # transfer learning replaces the output layer: any label set fits
        three = AttackData(data.images[:8], data.labels[:8] % 3, 3)
        with pytest.raises(BackmarkError, match="the model has 10 outputs but the attacker's data has 3"):
            quick(name)(model, three)
