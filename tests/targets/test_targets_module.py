"""ModuleTarget: label-only answers in batches, in eval mode without gradients, every mode restored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backmark.targets import ModuleTarget, Target, as_target


class Recorder(nn.Module):
    """A linear classifier with dropout that records what it saw on every call."""

    def __init__(self, features: int = 12, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(features, classes)
        self.batches: list[int] = []
        self.modes: list[bool] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        self.modes.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        out: torch.Tensor = self.fc(self.drop(x.flatten(1)))
        return out


def test_answers_are_the_argmax_in_int64() -> None:
    model = Recorder()
    x = torch.rand(10, 3, 2, 2)
    answers = ModuleTarget(model).predict(x)
    with torch.no_grad():
        expected = model.fc(x.flatten(1)).argmax(dim=1)  # eval: dropout is the identity
    assert answers.dtype == torch.int64 and answers.shape == (10,)
    assert torch.equal(answers, expected)
    assert not answers.requires_grad
    assert not answers.is_inference()  # callers may write into it
    answers[0] = 4


@pytest.mark.parametrize(
    ("count", "batch_size", "batches"), [(10, 3, [3, 3, 3, 1]), (8, 4, [4, 4]), (5, 256, [5])]
)
def test_batches(count: int, batch_size: int, batches: list[int]) -> None:
    model = Recorder()
    x = torch.rand(count, 12)
    answers = ModuleTarget(model, batch_size=batch_size).predict(x)
    assert model.batches == batches
    assert torch.equal(answers, ModuleTarget(Recorder(), batch_size=1000).predict(x))


def test_queries_run_in_eval_mode_without_gradients_and_training_mode_is_restored() -> None:
    model = Recorder()
    model.train()
    first = ModuleTarget(model, batch_size=4).predict(torch.ones(9, 12))
    assert model.modes == [False, False, False] and model.grad_enabled == [False] * 3
    assert model.training and model.drop.training and model.fc.training
    second = ModuleTarget(model, batch_size=4).predict(torch.ones(9, 12))
    assert torch.equal(first, second)  # dropout was off
    model.eval()
    ModuleTarget(model).predict(torch.ones(2, 12))
    assert not model.training and not model.drop.training


def test_mixed_modes_are_restored_module_by_module() -> None:
    # fine-tuning with a frozen (eval-mode) layer inside a model in training mode
    model = Recorder()
    model.train()
    model.drop.eval()
    ModuleTarget(model).predict(torch.ones(3, 12))
    assert model.training and model.fc.training and not model.drop.training


def test_mode_is_restored_when_the_model_fails() -> None:
    model = Recorder()
    model.train()
    with pytest.raises(RuntimeError):
        ModuleTarget(model).predict(torch.ones(3, 7))  # wrong feature count
    assert model.training and model.drop.training


def test_empty_input() -> None:
    answers = ModuleTarget(Recorder()).predict(torch.empty(0, 12))
    assert answers.dtype == torch.int64 and answers.shape == (0,)


def test_a_model_without_parameters() -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x.sum(dim=1), -x.sum(dim=1)], dim=1)

    answers = ModuleTarget(Fixed()).predict(torch.tensor([[1.0, 2.0], [-1.0, -2.0]]))
    assert answers.tolist() == [0, 1]


def test_as_target() -> None:
    model = Recorder()
    wrapped = as_target(model)
    assert isinstance(wrapped, ModuleTarget) and wrapped.model is model
    assert isinstance(wrapped, Target)

    class Api:
        def predict(self, images: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(images), dtype=torch.int64)

    api = Api()
    assert as_target(api) is api


def test_batch_size_must_be_positive() -> None:
    from backmark.errors import BackmarkError

    for bad in (0, -4):
        with pytest.raises(BackmarkError, match="batch size"):
            ModuleTarget(Recorder(), batch_size=bad)
