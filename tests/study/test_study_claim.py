"""The claim from every piece in a study (``study.measure.full_claim``): which pieces apply, at what level."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from backmark.keys import generate_key
from backmark.models import create_model
from backmark.study.measure import Trial, full_claim, innocent_claim
from backmark.verify.labelfree import verify_tests

SHAPE = (1, 28, 28)


class Wrapped(nn.Module):
    """A model behind an inference-time defence: its parameters carry a prefix."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.clamp(0, 1))


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn", num_classes=10, input_shape=SHAPE, width=4).eval()


@pytest.mark.timeout(120)
def test_lineage_joins_the_claim_and_sees_through_a_wrapper() -> None:
    owner = _model(1)
    mk = generate_key(num_classes=10, input_shape=SHAPE, size=30, seed=b"\x05" * 32)
    vk = mk.verification_key()
    trial = Trial(owner, mk, vk, None, (torch.empty(0), torch.empty(0)), lineage=True)  # type: ignore[arg-type]
    copied = Wrapped(copy.deepcopy(owner))
    tested = verify_tests(copied, mk, vk, test="either", alpha=trial.alpha)
    claim = full_claim(trial, copied, tested, changes_task=False)
    assert claim is not None and [p.name for p in claim.pieces] == ["labels", "label-free", "lineage"]
    assert claim.level == pytest.approx(1e-6 / 3) and claim.passed == ("lineage",) and claim.verified
    innocent = innocent_claim(trial, _model(2))  # another initialisation: nothing to see
    assert innocent is not None and not innocent.verified and len(innocent.pieces) == 3
    lineage = innocent.pieces[2]
    assert lineage.name == "lineage" and lineage.p_value > 1e-3 and "exact under H0" in lineage.assumption
    # a trial that asks for the trigger mark alone has no claim beyond it
    plain = Trial(owner, mk, vk, None, (torch.empty(0), torch.empty(0)))  # type: ignore[arg-type]
    assert full_claim(plain, copied, tested, changes_task=False) is None
