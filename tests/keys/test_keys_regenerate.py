"""check_regenerates: a generated key is rebuilt from its master seed and compared bit for bit."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backmark.errors import BackmarkError
from backmark.keys import (
    MarkingKey,
    check_regenerates,
    generate_key,
    load_marking_key,
    save_key_pair,
    save_marking_key,
)
from backmark.triggers import list_trigger_kinds

GENERATED = [k.name for k in list_trigger_kinds() if k.generate is not None]


def seed_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def rewritten(mk: MarkingKey, path: Path, **changes: object) -> MarkingKey:
    """``mk`` with ``changes``, written as a valid marking key file (fresh checksums) and read back."""
    save_marking_key(dataclasses.replace(mk, **changes), path)  # type: ignore[arg-type]
    return load_marking_key(path)


@pytest.mark.parametrize("kind", GENERATED)
def test_a_saved_key_of_every_generated_kind_regenerates(kind: str, tmp_path: Path) -> None:
    mk = generate_key(num_classes=7, input_shape=(3, 12, 10), size=5, kind=kind, seed=seed_of(kind))
    mk_path, _ = save_key_pair(mk, tmp_path / "key")
    check_regenerates(load_marking_key(mk_path))


def test_one_changed_pixel_is_found(rgb_key: MarkingKey, tmp_path: Path) -> None:
    images = rgb_key.images.copy()
    images[13, 2, 7, 4] ^= 1  # the lowest bit of one value
    tampered = rewritten(rgb_key, tmp_path / "mk.bmk", images=images)
    with pytest.raises(BackmarkError, match=r"^trigger image 13 is not the one .* \(1 of 768 pixel values"):
        check_regenerates(tampered)


def test_a_changed_label_is_found(small_key: MarkingKey, tmp_path: Path) -> None:
    labels = small_key.labels.copy()
    old = int(labels[4])
    labels[4] = (old + 1) % small_key.num_classes
    tampered = rewritten(small_key, tmp_path / "mk.bmk", labels=labels)
    with pytest.raises(
        BackmarkError, match=rf"^trigger label 4 is {labels[4]} but the key's seed gives {old}"
    ):
        check_regenerates(tampered)


def test_triggers_of_another_seed_are_found(small_key: MarkingKey) -> None:
    other = generate_key(num_classes=10, input_shape=(1, 8, 8), size=6, kind="noise", seed=seed_of("other"))
    claimed = dataclasses.replace(other, master_seed=small_key.master_seed)
    with pytest.raises(BackmarkError, match=r"^trigger image 0 is not the one"):
        check_regenerates(claimed)


def test_another_kind_is_found(small_key: MarkingKey) -> None:
    with pytest.raises(BackmarkError, match=r"^trigger image 0 is not the one"):
        check_regenerates(dataclasses.replace(small_key, kind="abstract"))


def test_a_key_without_a_seed_cannot_be_regenerated(small_key: MarkingKey) -> None:
    with pytest.raises(BackmarkError, match="cannot be regenerated: it has no master seed"):
        check_regenerates(dataclasses.replace(small_key, master_seed=None, seed_openings=(), derivation=None))


def test_a_folder_key_cannot_be_regenerated(tmp_path: Path) -> None:
    for i in range(3):
        Image.new("RGB", (20, 20), (40 * i, 7, 200)).save(tmp_path / f"{i}.png")
    mk = generate_key(num_classes=10, input_shape=(3, 16, 16), size=3, kind=f"folder:{tmp_path}")
    assert mk.master_seed is not None  # its labels still come from a seed, its images do not
    with pytest.raises(BackmarkError, match="cannot be regenerated: its trigger kind folder holds images"):
        check_regenerates(mk)


def test_an_unknown_kind_is_a_backmark_error(small_key: MarkingKey) -> None:
    with pytest.raises(BackmarkError, match="unknown trigger kind 'grid'"):
        check_regenerates(dataclasses.replace(small_key, kind="grid"))


def test_the_check_leaves_the_key_as_it_was(rgb_key: MarkingKey) -> None:
    before = (rgb_key.images.copy(), rgb_key.labels.copy())
    check_regenerates(rgb_key)
    assert np.array_equal(rgb_key.images, before[0]) and np.array_equal(rgb_key.labels, before[1])
