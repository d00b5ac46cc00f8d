"""Key-path resolution: a key folder or a marking key file, and missing pieces named as the user gave them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from backmark.errors import BackmarkError
from backmark.keys import (
    MK_NAME,
    VK_NAME,
    MarkingKey,
    generate_key,
    load_key_pair,
    resolve_key_paths,
    save_key_pair,
)


@pytest.fixture
def key_folder(small_key: MarkingKey, tmp_path: Path) -> Path:
    save_key_pair(small_key, tmp_path / "key")
    return tmp_path / "key"


def test_a_folder_and_a_marking_key_file_resolve_to_the_same_pair(key_folder: Path) -> None:
    expected = (key_folder / MK_NAME, key_folder / VK_NAME)
    assert resolve_key_paths(key_folder) == expected
    assert resolve_key_paths(key_folder / MK_NAME) == expected
    assert resolve_key_paths(str(key_folder)) == expected


def test_an_explicit_vk_wins(key_folder: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "public.json"
    shutil.copy(key_folder / VK_NAME, elsewhere)
    assert resolve_key_paths(key_folder, elsewhere) == (key_folder / MK_NAME, elsewhere)
    with pytest.raises(BackmarkError, match=r"verification key .*nope.json not found \(given with vk\)"):
        resolve_key_paths(key_folder, tmp_path / "nope.json")


def test_a_missing_folder_is_named_as_given_with_what_belongs_in_it(tmp_path: Path) -> None:
    missing = tmp_path / "mykey"
    with pytest.raises(BackmarkError) as info:
        resolve_key_paths(missing)
    message = str(info.value)
    assert message.startswith(f"key {missing} not found")
    assert MK_NAME in message and VK_NAME in message and "backmark keygen --out" in message
    assert f"{missing / VK_NAME}" not in message  # not a path the user never typed
    assert "\n" not in message


def test_a_folder_without_the_marking_key_says_so(key_folder: Path) -> None:
    (key_folder / MK_NAME).unlink()
    with pytest.raises(BackmarkError, match=rf"key folder .*key has no {MK_NAME} \(it holds {VK_NAME} only"):
        resolve_key_paths(key_folder)


def test_a_missing_vk_asks_for_vk_unless_not_needed(key_folder: Path) -> None:
    (key_folder / VK_NAME).unlink()
    with pytest.raises(BackmarkError, match=rf"key folder .* has no {VK_NAME}; pass the public key with"):
        resolve_key_paths(key_folder)
    with pytest.raises(BackmarkError, match=rf"the folder of marking key .* has no {VK_NAME}"):
        resolve_key_paths(key_folder / MK_NAME)
    assert resolve_key_paths(key_folder, need_vk=False)[0] == key_folder / MK_NAME


def test_load_key_pair_checks_that_the_pair_belongs_together(
    key_folder: Path, small_key: MarkingKey, tmp_path: Path
) -> None:
    mk, vk = load_key_pair(key_folder)
    assert vk == small_key.verification_key() and mk.n == small_key.n
    seed = hashlib.sha256(b"other").digest()
    other = generate_key(num_classes=10, input_shape=(1, 8, 8), size=6, kind="noise", seed=seed)
    save_key_pair(other, tmp_path / "other")
    with pytest.raises(BackmarkError, match="commitment to trigger image 0 does not open"):
        load_key_pair(key_folder, tmp_path / "other" / VK_NAME)
