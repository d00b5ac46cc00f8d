"""Derived copies are flagged, independent models are not, on tiny CNNs."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SHAPE, fit, tiny
from torch import nn

from backmark.errors import BackmarkError
from backmark.lineage import lineage_test, permute_units, trace_plan


def test_a_fine_tuned_copy_is_derived_by_both_tests(owner: nn.Module) -> None:
    copy = fit(owner, seed=7, steps=20, lr=0.1)
    r = lineage_test(owner=owner, suspect=copy, input_shape=SHAPE)
    assert r.verified and r.test == "either"
    assert r.exact_log10_p < -40 and r.robust_log10_p < -10
    assert [x.hits for x in r.layers] == [8, 16, 32]
    assert r.layers[0].matched == tuple(range(8))


def test_a_permuted_copy_is_seen_by_the_robust_test_only(owner: nn.Module) -> None:
    plan = trace_plan(owner, input_shape=SHAPE)
    permuted = fit(permute_units(owner, plan, seed=3), seed=8, steps=10)
    r = lineage_test(owner=owner, suspect=permuted, input_shape=SHAPE)
    assert r.verified and r.robust_log10_p < -10
    assert r.exact_log10_p > -3  # the exact test compares unit indices: a permutation hides from it
    assert not lineage_test(owner=owner, suspect=permuted, input_shape=SHAPE, test="exact").verified


def test_independent_models_are_not_flagged(owner: nn.Module, independent: list[nn.Module]) -> None:
    for model in independent:
        r = lineage_test(owner=owner, suspect=model, input_shape=SHAPE)
        assert not r.verified
        assert r.exact_p > 1e-3 and r.robust_p > 1e-3
        assert r.p_value == pytest.approx(min(1.0, 2 * min(r.exact_p, r.robust_p)))


def test_the_same_seed_is_a_shared_initialisation(owner: nn.Module) -> None:
    # another owner who trains from the same seed on other data: the null is false, and it is flagged
    same = fit(tiny(1), seed=999)
    assert lineage_test(owner=owner, suspect=same, input_shape=SHAPE, test="exact").verified


def test_a_wider_copy_pairs_and_other_kernels_are_refused(owner: nn.Module) -> None:
    wider = tiny(5, width=12, hidden=48)
    r = lineage_test(owner=owner, suspect=wider, input_shape=SHAPE)
    assert [(x.owner_units, x.suspect_units) for x in r.layers] == [(8, 12), (16, 24), (32, 48)]
    assert not r.verified
    other = nn.Sequential(nn.Conv2d(1, 8, 3))
    with pytest.raises(BackmarkError, match="only the numbers of units may differ"):
        lineage_test(owner=owner, suspect={"features.0.weight": other[0].weight}, input_shape=SHAPE)


def test_every_report_says_what_it_assumes(owner: nn.Module) -> None:
    record = lineage_test(owner=owner, suspect=owner, input_shape=SHAPE, alpha=1e-9).to_dict()
    assert record["verified"] and record["alpha"] == 1e-9 and math.isfinite(record["log10_p_value"])
    text = record["assumptions"]
    assert "shared initialisation" in text["detects"] and "exact under H0" in text["exact_p"]
    assert "NOT exact" in text["robust_p"] and "measured" in text["robust_p"]
    with pytest.raises(BackmarkError, match="test must be one of"):
        lineage_test(owner=owner, suspect=owner, input_shape=SHAPE, test="best")  # type: ignore[arg-type]


def test_a_resnet_pairs_its_residual_streams() -> None:
    from backmark.models import create_model

    def resnet(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return create_model("preact-resnet18", num_classes=10, input_shape=(3, 32, 32), width=4).eval()

    owner = resnet(1)
    permuted = permute_units(owner, trace_plan(owner, input_shape=(3, 32, 32)), seed=2)
    r = lineage_test(owner=owner, suspect=permuted, input_shape=(3, 32, 32))
    assert r.verified and r.robust_log10_p < -20 and r.exact_log10_p > -3
    assert not lineage_test(owner=owner, suspect=resnet(3), input_shape=(3, 32, 32)).verified
