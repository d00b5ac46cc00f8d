"""Tests generated from the trigger-kind registry: how every kind is named, written and refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backmark.errors import BackmarkError
from backmark.keys.derive import REAL_PARTS
from backmark.triggers import (
    TriggerKind,
    folder_images,
    get_trigger_kind,
    list_trigger_kinds,
    parse_trigger_kind,
    register_generated_kind,
    trigger_kind_forms,
)

KINDS = list_trigger_kinds()
GENERATED = [k.name for k in KINDS if k.generate is not None]
READ = [k.name for k in KINDS if k.read is not None]


def test_the_registry_holds_the_known_kinds() -> None:
    assert GENERATED == ["abstract", "noise"] and READ == ["folder"]
    assert trigger_kind_forms() == ["abstract", "blend", "folder:DIR", "heldout", "noise"]
    assert get_trigger_kind("folder").read is folder_images


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_is_generated_read_or_made_of_real_images(kind: TriggerKind) -> None:
    assert kind.description and "\n" not in kind.description
    if kind.name in REAL_PARTS:  # heldout, blend: keygen makes them from the owner's labelled data
        assert kind.generate is None and kind.read is None
        assert parse_trigger_kind(kind.name) == (kind, None)
    else:
        assert (kind.generate is None) != (kind.read is None)


@pytest.mark.parametrize("name", GENERATED)
def test_a_generated_kind_is_written_bare(name: str) -> None:
    kind, folder = parse_trigger_kind(name)
    assert kind.name == name and folder is None and kind.form == name
    with pytest.raises(BackmarkError, match=rf"^trigger kind {name} is generated .* takes no ':/x'"):
        parse_trigger_kind(f"{name}:/x")
    with pytest.raises(BackmarkError, match="reads no folder"):
        kind.read_folder(Path("/x"), (3, 8, 8))


@pytest.mark.parametrize("name", READ)
def test_a_folder_kind_needs_its_folder(name: str, tmp_path: Path) -> None:
    kind, folder = parse_trigger_kind(f"{name}:{tmp_path}")
    assert kind.name == name and folder == tmp_path and kind.form == f"{name}:DIR"
    for bare in (name, f"{name}:"):
        with pytest.raises(
            BackmarkError, match=rf"^trigger kind {name} needs a folder of images: {name}:DIR"
        ):
            parse_trigger_kind(bare)
    with pytest.raises(BackmarkError, match="reads no folder"):
        kind.read_folder(None, (3, 8, 8))


@pytest.mark.parametrize("text", ["Abstract", "", "grid", "grid:/x", ":abstract"])
def test_an_unknown_kind_lists_every_form(text: str) -> None:
    with pytest.raises(BackmarkError, match=r"^unknown trigger kind") as info:
        parse_trigger_kind(text)
    message = str(info.value)
    assert "\n" not in message and all(form in message for form in trigger_kind_forms())


def test_a_kind_cannot_be_registered_twice_or_with_a_colon() -> None:
    def flat(seed: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        return np.zeros(shape, dtype=np.uint8)

    for name in ("noise", "flat:x", ""):
        with pytest.raises(ValueError, match="registered twice"):
            register_generated_kind(name, description="flat")(flat)
    assert list_trigger_kinds() == KINDS
