"""The one shape of the plugin tables: infra.plugins.Registry, and the trio each feature builds on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backmark import attacks, data, models, triggers
from backmark.errors import BackmarkError
from backmark.infra.plugins import Registry


def test_register_hands_the_object_back_and_stores_its_entry() -> None:
    table: Registry[tuple[str, int]] = Registry("widget")

    def make(size: int) -> tuple[str, int]:
        return ("sized", size)

    assert table.register("b", make)(3) == 3
    table.add("a", ("plain", 1))
    assert table.names() == ["a", "b"]
    assert table.entries() == [("plain", 1), ("sized", 3)]
    assert table.get("b") == ("sized", 3)
    assert table.forms() == ["a", "b"]


@pytest.mark.parametrize("name", ["", "a:b", "a"])
def test_an_empty_name_a_colon_or_a_second_registration_is_refused(name: str) -> None:
    table: Registry[int] = Registry("widget")
    table.add("a", 1)
    with pytest.raises(ValueError, match="empty, has a ':' or is registered twice"):
        table.add(name, 2)
    assert table.names() == ["a"]


def test_an_unknown_name_is_one_line_listing_every_form() -> None:
    table: Registry[tuple[str, ...]] = Registry("widget", forms=lambda forms: forms, also="or FILE")
    table.add("b", ("b", "b:DIR"))
    table.add("a", ("a",))
    with pytest.raises(BackmarkError) as info:
        table.get("c")
    assert str(info.value) == "unknown widget 'c'; choose from: a, b, b:DIR, or FILE"


# Each feature's table: register_<kind>, get_<kind>, list_<kind>s, and one registered name.
TRIOS: dict[str, tuple[Callable[..., Any], Callable[[str], Any], Callable[[], list[Any]], str]] = {
    "attack": (attacks.register_attack, attacks.get_attack, attacks.list_attacks, "ftal"),
    "model": (models.register_model, models.get_model, models.list_models, "cnn"),
    "trigger kind": (
        triggers.register_generated_kind,
        triggers.get_trigger_kind,
        triggers.list_trigger_kinds,
        "abstract",
    ),
    "dataset": (data.register_dataset, data.get_dataset, data.list_datasets, "mnist"),
}


@pytest.mark.parametrize("kind", TRIOS)
def test_every_feature_has_the_same_trio(kind: str) -> None:
    register, get, listed, name = TRIOS[kind]
    entries = listed()
    assert [e.name for e in entries] == sorted(e.name for e in entries)
    assert [get(e.name) for e in entries] == entries
    assert get(name).name == name and callable(register)
    with pytest.raises(BackmarkError, match=r"^unknown \w+( \w+)? 'nope'; choose from: ") as info:
        get("nope")
    assert "\n" not in str(info.value)
