"""Results are frozen dataclasses that hold no dict or list: once returned, nothing in them changes."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from backmark.embed import EpochRecord, FinishResult, TrainResult
from backmark.registry.audit import AuditReport
from backmark.registry.chain import Entry, Submission
from backmark.report.demo import DemoReport, DemoRow
from backmark.report.owner import OwnerModel, OwnerModels
from backmark.robustness import AttackOutcome, AttackReport, Baseline, EpochPoint, Reproduction
from backmark.robustness.results import ModelRow
from backmark.verify import Evidence, VerificationResult

RESULTS = [
    Evidence,
    VerificationResult,
    EpochRecord,
    TrainResult,
    FinishResult,
    OwnerModel,
    OwnerModels,
    EpochPoint,
    Baseline,
    AttackOutcome,
    AttackReport,
    ModelRow,
    Reproduction,
    DemoRow,
    DemoReport,
    Entry,
    Submission,
    AuditReport,
]


def mutable(hint: object) -> bool:
    origin = typing.get_origin(hint) or hint
    if origin in (dict, list, set):
        return True
    return any(mutable(arg) for arg in typing.get_args(hint))


@pytest.mark.parametrize("cls", RESULTS, ids=lambda c: c.__name__)
def test_a_result_is_frozen_and_holds_no_mutable_container(cls: type) -> None:
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    hints = typing.get_type_hints(cls)
    assert [name for name, hint in hints.items() if mutable(hint)] == []


def test_the_check_finds_a_dict() -> None:
    assert mutable(dict[str, int]) and mutable(tuple[list[int], ...]) and not mutable(tuple[int, ...])
