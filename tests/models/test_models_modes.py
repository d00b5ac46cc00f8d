"""evaluating(): eval mode inside, every submodule's own mode restored afterwards, also on errors.

Also the places that query a model with it: the trainer's accuracy, ModuleTarget and head_inputs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backmark.attacks._fit import head_inputs
from backmark.models.modes import evaluating
from backmark.targets import ModuleTarget
from backmark.training import accuracy


class Probe(nn.Module):
    """Records the mode it ran in; a frozen batch-norm inside a trained block gives mixed modes."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5))
        self.head = nn.Linear(6, 3)
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.extend(m.training for m in self.modules())
        return self.head(self.block(x))


def _mixed() -> tuple[Probe, list[bool]]:
    model = Probe()
    model.train()
    model.block[2].eval()  # frozen statistics, as a fine-tuner might leave them
    model.head.eval()
    return model, [m.training for m in model.modules()]


def test_evaluating_sets_eval_inside_and_restores_mixed_modes() -> None:
    model, before = _mixed()
    assert len(set(before)) == 2  # really mixed
    with evaluating(model) as inside:
        assert inside is model
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before
    # model.train(was_training), the old way, would have trained the frozen batch-norm again
    model.train(model.training)
    assert [m.training for m in model.modules()] != before


def test_evaluating_restores_modes_when_the_block_raises() -> None:
    model, before = _mixed()
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before


def test_evaluating_nested_restores_each_level() -> None:
    model, before = _mixed()
    with evaluating(model):
        with evaluating(model.block):
            pass
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before


def test_every_query_runs_in_eval_mode_and_restores_modes() -> None:
    images = torch.randint(0, 256, (8, 1, 2, 2), dtype=torch.uint8)
    labels = torch.zeros(8, dtype=torch.int64)
    queries = {
        "accuracy": lambda m: accuracy(m, images, labels, batch=3),
        "ModuleTarget": lambda m: ModuleTarget(m, batch_size=3).predict(images.float() / 255),
        "head_inputs": lambda m: head_inputs(m, m.head, images, batch=3),
    }
    for name, query in queries.items():
        model, before = _mixed()
        query(model)
        assert model.seen and not any(model.seen), name  # every forward pass ran in eval mode
        assert [m.training for m in model.modules()] == before, name
