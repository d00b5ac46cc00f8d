"""Models traced into groups of exchangeable units; what cannot be paired is refused in one line."""

from __future__ import annotations

import pytest
import torch
from conftest import SHAPE, tiny
from torch import nn

from backmark.lineage import PlanError, permute_units, rescale_units, trace_plan
from backmark.models import create_model


def test_the_cnn_has_three_groups_chained_from_the_input() -> None:
    plan = trace_plan(tiny(0), input_shape=SHAPE)
    assert [(g.name, g.size) for g in plan.groups] == [("features.0", 8), ("features.4", 16), ("head.2", 32)]
    assert [p.input for g in plan.groups for p in g.producers] == [None, 0, 1]
    assert plan.groups[1].consumers[0].block == 16  # the linear layer reads 4x4 positions per channel
    assert plan.groups[2].consumers[0].output is None  # the output classes are a fixed end


def test_residual_additions_tie_a_stage_into_one_group() -> None:
    model = create_model("preact-resnet18", num_classes=10, input_shape=(3, 32, 32), width=4)
    plan = trace_plan(model, input_shape=(3, 32, 32))
    stream = plan.groups[0]
    assert [p.layer for p in stream.producers] == ["conv1", "layers.0.conv2", "layers.1.conv2"]
    assert len(plan.groups) == 12  # 4 residual streams and 8 inner convolutions


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3)
        self.b = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(8 * 26 * 26, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.a(x), self.b(x)], 1).flatten(1))


def test_unsupported_layers_are_refused_in_one_line() -> None:
    with pytest.raises(PlanError, match=r"cannot pair the units of cat .*supported: Conv1d/Conv2d") as exc:
        trace_plan(Concat(), input_shape=SHAPE)
    assert "\n" not in str(exc.value)
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 26 * 26, 3))
    with pytest.raises(PlanError, match="groups=2"):
        trace_plan(grouped, input_shape=(2, 28, 28))


def test_permuting_and_rescaling_units_keep_the_function() -> None:
    model = tiny(0).eval()
    plan = trace_plan(model, input_shape=SHAPE)
    x = torch.rand(16, *SHAPE)
    with torch.no_grad():
        want = model(x)
        for other in (permute_units(model, plan, seed=1), rescale_units(model, plan, seed=2)):
            assert torch.allclose(other.eval()(x), want, atol=1e-4)
            assert not torch.equal(
                other.state_dict()["features.4.weight"], model.state_dict()["features.4.weight"]
            )
