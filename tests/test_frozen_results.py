"""Every dataclass of backmark is frozen and holds no dict, list or set: once made, nothing in it changes.

The classes are found by walking the package, so a new result, config or record is checked without being
listed here.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing

import pytest

import backmark

# Fields that still hold a mutable container, each with its reason; the list only shrinks.
EXEMPT: dict[str, str] = {}


# Dataclasses that are state, not results, each with its reason.
NOT_RESULTS: dict[str, str] = {
    "backmark.infra.guard.Guard": "issue 21: the running server's connection guard, changed as it runs",
}


def _dataclasses() -> list[type]:
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(backmark.__path__, "backmark."):
        if info.name == "backmark.__main__":  # runs the command line when imported
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and obj.__module__ == module.__name__ and dataclasses.is_dataclass(obj):
                name = f"{obj.__module__}.{obj.__qualname__}"
                if name not in NOT_RESULTS:
                    found[name] = obj
    return [found[name] for name in sorted(found)]


DATACLASSES = _dataclasses()


def mutable(hint: object) -> bool:
    origin = typing.get_origin(hint) or hint
    if origin in (dict, list, set):
        return True
    return any(mutable(arg) for arg in typing.get_args(hint))


def test_the_walk_finds_the_results() -> None:
    names = {c.__name__ for c in DATACLASSES}
    assert {
        "Evidence",
        "AttackOutcome",
        "Challenge",
        "Proof",
        "AttackInfo",
        "Trial",
        "Decision",
        "FinishResult",
    } <= names
    assert len(DATACLASSES) > 90


@pytest.mark.parametrize("cls", DATACLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_a_dataclass_is_frozen_and_holds_no_mutable_container(cls: type) -> None:
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    hints = typing.get_type_hints(cls)
    where = f"{cls.__module__}.{cls.__qualname__}"
    assert [name for name, hint in hints.items() if mutable(hint) and f"{where}.{name}" not in EXEMPT] == []


def test_every_exemption_is_still_needed() -> None:
    by_name = {f"{c.__module__}.{c.__qualname__}": c for c in DATACLASSES}
    for field in EXEMPT:
        owner, _, name = field.rpartition(".")
        assert mutable(typing.get_type_hints(by_name[owner])[name]), f"{field} is read-only now: remove it"


def test_the_check_finds_a_dict() -> None:
    assert mutable(dict[str, int]) and mutable(tuple[list[int], ...]) and not mutable(tuple[int, ...])
