"""Key files: permissions, no silent overwrite, round trips, and every kind of damage refused by name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

from backmark.errors import BackmarkError
from backmark.infra import json_files
from backmark.keys import (
    MK_NAME,
    VK_NAME,
    MarkingKey,
    check_openings,
    generate_key,
    load_marking_key,
    load_verification_key,
    save_key_pair,
    save_marking_key,
    save_verification_key,
)
from backmark.keys import files as key_files

MAGIC = b"BACKMARK-MK\n"


def seed_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def assert_same_key(a: MarkingKey, b: MarkingKey) -> None:
    assert np.array_equal(a.images, b.images) and a.images.dtype == b.images.dtype
    assert np.array_equal(a.labels, b.labels) and b.labels.dtype == np.int64
    assert a.num_classes == b.num_classes
    assert a.image_openings == b.image_openings and a.label_openings == b.label_openings
    assert (a.kind, a.created, a.master_seed, a.source) == (b.kind, b.created, b.master_seed, b.source)


def layout(raw: bytes, mk: MarkingKey) -> tuple[int, int, int]:
    """(start of the header, start of the images, bytes per image) of a marking key file."""
    (hlen,) = struct.unpack(">I", raw[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    size = int(np.prod(mk.input_shape))
    assert len(raw) == start + hlen + mk.n * size + 32
    return start, start + hlen, size


def flipped(raw: bytes, pos: int, mask: int = 0x01) -> bytes:
    out = bytearray(raw)
    out[pos] ^= mask
    return bytes(out)


def blames_an_image(message: str) -> bool:
    return re.search(r"trigger images? [0-9, .]+ (was|were) changed", message) is not None


def load_error(path: Path) -> str:
    with pytest.raises(BackmarkError) as info:
        load_marking_key(path)
    message = str(info.value)
    assert "\n" not in message and str(path.name) in message
    return message


# --- writing --------------------------------------------------------------------------------------------


def test_save_key_pair_writes_both_files(tmp_path: Path, small_key: MarkingKey) -> None:
    folder = tmp_path / "new" / "key"
    mk_path, vk_path = save_key_pair(small_key, folder)
    assert (mk_path, vk_path) == (folder / MK_NAME, folder / VK_NAME)
    assert sorted(p.name for p in folder.iterdir()) == ["marking-key.bmk", "verification-key.json"]
    assert stat.S_IMODE(mk_path.stat().st_mode) == 0o600
    assert not stat.S_IMODE(folder.stat().st_mode) & 0o077
    assert mk_path.read_bytes().startswith(MAGIC)
    doc = json.loads(vk_path.read_text())
    assert doc["digest"] == small_key.verification_key().digest
    assert doc["n"] == 6 and doc["num_classes"] == 10 and doc["input_shape"] == [1, 8, 8]
    assert sorted(p.name for p in folder.iterdir()) == sorted([MK_NAME, VK_NAME])  # no temporary files


def test_save_refuses_to_overwrite_without_force(tmp_path: Path, small_key: MarkingKey) -> None:
    mk_path, vk_path = save_key_pair(small_key, tmp_path)
    before = (mk_path.read_bytes(), vk_path.read_bytes())
    other = generate_key(num_classes=10, input_shape=(1, 8, 8), size=6, kind="noise", seed=seed_of("other"))
    with pytest.raises(BackmarkError, match="already exists"):
        save_key_pair(other, tmp_path)
    assert (mk_path.read_bytes(), vk_path.read_bytes()) == before
    # also when only one of the two files is there
    vk_path.unlink()
    with pytest.raises(BackmarkError, match="already exists"):
        save_key_pair(other, tmp_path)
    assert mk_path.read_bytes() == before[0] and not vk_path.exists()
    with pytest.raises(BackmarkError, match="already exists"):
        save_marking_key(other, mk_path)
    save_verification_key(small_key.verification_key(), vk_path)
    with pytest.raises(BackmarkError, match="already exists"):
        save_verification_key(other.verification_key(), vk_path)


def test_force_overwrites(tmp_path: Path, small_key: MarkingKey) -> None:
    save_key_pair(small_key, tmp_path)
    other = generate_key(num_classes=7, input_shape=(3, 8, 8), size=4, kind="noise", seed=seed_of("forced"))
    mk_path, vk_path = save_key_pair(other, tmp_path, force=True)
    assert_same_key(load_marking_key(mk_path), other)
    assert load_verification_key(vk_path) == other.verification_key()
    assert stat.S_IMODE(mk_path.stat().st_mode) == 0o600


def test_round_trip(tmp_path: Path, rgb_key: MarkingKey) -> None:
    mk_path, vk_path = save_key_pair(rgb_key, tmp_path)
    mk = load_marking_key(mk_path)
    vk = load_verification_key(vk_path)
    assert_same_key(mk, rgb_key)
    assert vk == rgb_key.verification_key() == mk.verification_key()
    assert vk.digest == rgb_key.verification_key().digest and len(vk.key_id) == 16
    check_openings(mk, vk)
    # a folder stands for the files in it
    assert_same_key(load_marking_key(tmp_path), rgb_key)
    assert load_verification_key(tmp_path) == vk


def test_round_trip_without_master_seed_and_with_source(tmp_path: Path, small_key: MarkingKey) -> None:
    mk = dataclasses.replace(
        small_key,
        master_seed=None,
        seed_openings=(),
        derivation=None,
        source={"kind": "folder", "files": ["a.png"]},
    )
    save_marking_key(mk, tmp_path / "k.bmk")
    assert_same_key(load_marking_key(tmp_path / "k.bmk"), mk)


def test_file_bytes_are_reproducible(tmp_path: Path, small_key: MarkingKey) -> None:
    save_key_pair(small_key, tmp_path / "a")
    save_key_pair(load_marking_key(tmp_path / "a"), tmp_path / "b")
    for name in (MK_NAME, VK_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def fixed_key() -> MarkingKey:
    """A key with every field fixed (generate_key draws the openings and the date afresh)."""
    mk = generate_key(num_classes=10, input_shape=(1, 8, 8), size=4, kind="noise", seed=b"\x01" * 32)
    return dataclasses.replace(
        mk,
        image_openings=tuple(bytes([i]) * 32 for i in range(4)),
        label_openings=tuple(bytes([16 + i]) * 32 for i in range(4)),
        created="2025-01-01T00:00:00+00:00",
    )


def test_file_bytes_are_those_of_earlier_versions(tmp_path: Path) -> None:
    # the SHA-256 of fixed_key's file as written before the container moved to infra/keyfile.py
    mk = fixed_key()
    path = save_marking_key(mk, tmp_path / MK_NAME)
    raw = path.read_bytes()
    assert len(raw) == 1886
    digest = "8636971690405119bea155385a59adf65bdfa50f53d8efbba6e71000ab9cb230"
    assert hashlib.sha256(raw).hexdigest() == digest
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = load_marking_key(path)
    assert_same_key(back, mk)
    assert back.verification_key() == mk.verification_key()


# --- damage to the marking key --------------------------------------------------------------------------


def test_one_flipped_byte_names_the_damaged_part(tmp_path: Path, small_key: MarkingKey) -> None:
    mk_path, _ = save_key_pair(small_key, tmp_path)
    raw = mk_path.read_bytes()
    start, image_start, size = layout(raw, small_key)
    header_text = raw[start:image_start].decode()
    label_pos = start + header_text.index('"labels": [') + len('"labels": [')
    hash_pos = start + header_text.index('"image_sha256": ["') + len('"image_sha256": ["') + 5
    opening_pos = start + header_text.index('"label_openings": ["') + len('"label_openings": ["') + 9
    cases = {
        0: "bad magic",
        len(MAGIC) + 3: "header",  # the header length
        start: "header",  # the opening brace of the header
        label_pos: "header",  # a label digit: still valid JSON
        opening_pos: "header",
        hash_pos: "header",  # a stored image hash: the images themselves are intact
        image_start: "trigger image 0 was changed",
        image_start + 3 * size + 17: "trigger image 3 was changed",
        image_start + small_key.n * size - 1: f"trigger image {small_key.n - 1} was changed",
        len(raw) - 32: "checksum",
        len(raw) - 1: "checksum",
    }
    for pos, expected in cases.items():
        mk_path.write_bytes(flipped(raw, pos))
        message = load_error(mk_path)
        assert expected in message, (pos, message)
        if expected == "header":
            assert not blames_an_image(message), (pos, message)
    mk_path.write_bytes(raw)
    assert_same_key(load_marking_key(mk_path), small_key)


class InMemoryFile:
    """Serve the key loaders' file reads from memory: thousands of rewrites of a file on disk are slow."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.data = b""
        for module in (key_files, json_files):  # the marking key's reader, and the verification key's
            monkeypatch.setattr(module, "read_file", lambda path, what, hint="": self.data)


def test_every_single_byte_flip_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mk = generate_key(num_classes=5, input_shape=(1, 8, 8), size=3, kind="noise", seed=seed_of("fuzz"))
    path = save_marking_key(mk, tmp_path / MK_NAME)
    raw = path.read_bytes()
    _, image_start, size = layout(raw, mk)
    memory = InMemoryFile(monkeypatch)
    for pos in range(len(raw)):
        memory.data = flipped(raw, pos, 0x01 if pos % 2 else 0x80)
        message = load_error(path)
        if image_start <= pos < len(raw) - 32:
            assert f"trigger image {(pos - image_start) // size} was changed" in message, pos
        else:
            assert not blames_an_image(message), (pos, message)


def resealed(raw: bytes, mk: MarkingKey, **changes: object) -> bytes:
    """The marking key file with header fields changed and a recomputed, valid checksum."""
    start, image_start, _ = layout(raw, mk)
    header = {**json.loads(raw[start:image_start]), **changes}
    new_header = json.dumps(header, sort_keys=True).encode()
    body = MAGIC + struct.pack(">I", len(new_header)) + new_header + raw[image_start:-32]
    return body + hashlib.sha256(body).digest()


def test_rewritten_checksum_still_caught_by_commitments(tmp_path: Path, small_key: MarkingKey) -> None:
    # someone edits a label and recomputes the trailer: the header's vk digest no longer fits
    path = save_marking_key(small_key, tmp_path / MK_NAME)
    raw = path.read_bytes()
    labels = [int(v) for v in small_key.labels]
    labels[2] = (labels[2] + 1) % 10
    path.write_bytes(resealed(raw, small_key, labels=labels))
    assert "commitments do not match" in load_error(path)
    path.write_bytes(resealed(raw, small_key, version=3))
    assert "v3" in load_error(path)
    path.write_bytes(resealed(raw, small_key, format="something-else"))
    assert "something-else" in load_error(path)
    path.write_bytes(resealed(raw, small_key, labels=labels[:-1]))
    assert "differ in count" in load_error(path)
    path.write_bytes(resealed(raw, small_key, image_openings=["zz"] * 6))
    assert "bad field" in load_error(path)
    path.write_bytes(resealed(raw, small_key))
    assert_same_key(load_marking_key(path), small_key)


def test_a_resealed_unreadable_header_is_a_one_line_error(tmp_path: Path, small_key: MarkingKey) -> None:
    path = save_marking_key(small_key, tmp_path / MK_NAME)
    raw = path.read_bytes()
    start, image_start, _ = layout(raw, small_key)
    long_int = raw[start:image_start].replace(b'"n": 6', b'"n": 6' + b"0" * 5000)  # was a ValueError
    for header, reason in ((long_int, "integer string conversion"), (b"[1]", "not a JSON object")):
        body = MAGIC + struct.pack(">I", len(header)) + header + raw[image_start:-32]
        path.write_bytes(body + hashlib.sha256(body).digest())
        message = load_error(path)
        assert "has a valid checksum but an unreadable header" in message and reason in message


def test_truncated_and_extended_files(tmp_path: Path, small_key: MarkingKey) -> None:
    path = save_marking_key(small_key, tmp_path / MK_NAME)
    raw = path.read_bytes()
    _, image_start, _ = layout(raw, small_key)
    for cut in (
        0,
        5,
        len(MAGIC),
        len(MAGIC) + 3,
        len(MAGIC) + 30,
        image_start,
        image_start + 70,
        len(raw) - 1,
    ):
        path.write_bytes(raw[:cut])
        message = load_error(path)
        assert not blames_an_image(message), (cut, message)
    path.write_bytes(raw + b"\0")
    assert "bytes long" in load_error(path)


def test_not_a_marking_key(tmp_path: Path, small_key: MarkingKey) -> None:
    bad = tmp_path / "bad.bmk"
    bad.write_bytes(b"PK\x03\x04" + bytes(100))
    assert "bad magic" in load_error(bad)
    bad.write_text("hello")
    assert "bad magic" in load_error(bad)
    assert "not found" in load_error(tmp_path / "missing.bmk")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    assert "not found" in load_error(empty_folder)
    # a folder named like the key file: the loader looks inside it, and finds nothing
    (tmp_path / "nested" / MK_NAME).mkdir(parents=True)
    assert "not found" in load_error(tmp_path / "nested" / MK_NAME)
    (tmp_path / "nested" / MK_NAME / MK_NAME).mkdir()
    assert "is a folder" in load_error(tmp_path / "nested")


# --- damage to the verification key ---------------------------------------------------------------------


def _vk_error(path: Path) -> str:
    with pytest.raises(BackmarkError) as info:
        load_verification_key(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_vk_edits_are_refused(tmp_path: Path, small_key: MarkingKey) -> None:
    path = save_verification_key(small_key.verification_key(), tmp_path / VK_NAME)
    text = path.read_text()
    doc = json.loads(text)

    def edited(**changes: object) -> str:
        return json.dumps({**doc, **changes}, indent=1)

    c0 = doc["image_commitments"][0]
    digit = "1" if c0[10] != "1" else "2"
    changed_commitment = c0[:10] + digit + c0[11:]
    cases = {
        text.replace(c0, changed_commitment): "digest does not match",
        text.replace('"num_classes": 10', '"num_classes": 11'): "digest does not match",
        text.replace('"num_classes": 10', '"num_classes": 2'): "digest does not match",
        edited(label_commitments=doc["label_commitments"][::-1]): "digest does not match",
        edited(kind="abstract"): "digest does not match",
        edited(created="2000-01-01T00:00:00+00:00"): "digest does not match",
        edited(digest="0" * 64): "digest does not match",
        edited(n=5): "counts differ",
        edited(label_commitments=doc["label_commitments"][:-1]): "counts differ",
        edited(input_shape=[1, 8]): "counts differ",
        edited(image_commitments=["zz" * 32, *doc["image_commitments"][1:]]): "non-hex",
        edited(image_commitments=[c0[:-2], *doc["image_commitments"][1:]]): "wrong length",
        edited(image_commitments="abc"): "must be a list",
        edited(algorithm="md5-v0"): "algorithm",
        edited(version=3): "v3",
        edited(seed_commitments=doc["seed_commitments"][:-1]): "counts differ",
        edited(derivation="backmark-v9"): "derivation",
        edited(format="something"): "not a backmark verification key",
        edited(kind="blend", num_classes=3): "3 classes are too few for a blend key",
        edited(kind="heldout", num_classes=2): "2 classes are too few for a heldout key",
        text.replace('"num_classes": 10', '"num_classes": 1' + "0" * 5000): "cannot be read as JSON",
    }
    for body, expected in cases.items():
        path.write_text(body)
        message = _vk_error(path)
        assert expected in message, (expected, message)
    no_kind = dict(doc)
    del no_kind["kind"]
    path.write_text(json.dumps(no_kind))
    assert "missing or has a bad field" in _vk_error(path)
    path.write_text(text)
    assert load_verification_key(path) == small_key.verification_key()


def test_every_single_byte_flip_of_the_vk_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mk = generate_key(num_classes=10, input_shape=(1, 8, 8), size=3, kind="noise", seed=seed_of("vk fuzz"))
    path = save_verification_key(mk.verification_key(), tmp_path / VK_NAME)
    raw = path.read_bytes()
    memory = InMemoryFile(monkeypatch)
    memory.data = raw
    assert load_verification_key(path) == mk.verification_key()
    for pos in range(len(raw)):
        for mask in (0x01, 0x02, 0x80):
            memory.data = flipped(raw, pos, mask)
            _vk_error(path)


def test_vk_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / VK_NAME
    path.write_text("{not json")
    assert "not valid JSON" in _vk_error(path)
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    _vk_error(path)
    path.write_text("[1, 2, 3]")
    assert "not a backmark verification key" in _vk_error(path)
    path.write_text("")
    _vk_error(path)
    assert "not found" in _vk_error(tmp_path / "missing.json")
    (tmp_path / "sub" / VK_NAME).mkdir(parents=True)
    assert "is a folder" in _vk_error(tmp_path / "sub")


# --- the commitments of a pair ---------------------------------------------------------------------------


def test_check_openings_names_the_first_bad_index(small_key: MarkingKey) -> None:
    vk = small_key.verification_key()
    check_openings(small_key, vk)
    other = generate_key(num_classes=10, input_shape=(1, 8, 8), size=6, kind="noise", seed=seed_of("small"))
    with pytest.raises(BackmarkError, match="trigger image 0 does not open"):
        check_openings(other, vk)  # same triggers, other openings
    labels = small_key.labels.copy()
    labels[4] = (labels[4] + 1) % 10
    with pytest.raises(BackmarkError, match="trigger label 4 does not open"):
        check_openings(dataclasses.replace(small_key, labels=labels), vk)
    images = small_key.images.copy()
    images[2, 0, 3, 3] ^= 1
    images[5, 0, 0, 0] ^= 1
    with pytest.raises(BackmarkError, match="trigger image 2 does not open"):
        check_openings(dataclasses.replace(small_key, images=images), vk)
    openings = list(small_key.label_openings)
    openings[3] = bytes(32)
    with pytest.raises(BackmarkError, match="trigger label 3 does not open"):
        check_openings(dataclasses.replace(small_key, label_openings=tuple(openings)), vk)


def test_check_openings_refuses_a_key_of_another_shape(small_key: MarkingKey, rgb_key: MarkingKey) -> None:
    with pytest.raises(BackmarkError, match="does not belong"):
        check_openings(small_key, rgb_key.verification_key())
    fewer = generate_key(num_classes=10, input_shape=(1, 8, 8), size=5, kind="noise")
    with pytest.raises(BackmarkError, match="does not belong"):
        check_openings(fewer, small_key.verification_key())
    more_classes = generate_key(num_classes=11, input_shape=(1, 8, 8), size=6, kind="noise")
    with pytest.raises(BackmarkError, match="does not belong"):
        check_openings(more_classes, small_key.verification_key())


def test_marking_key_checks_itself(small_key: MarkingKey) -> None:
    with pytest.raises(BackmarkError, match="outside"):
        dataclasses.replace(small_key, labels=np.full(6, 10, dtype=np.int64))
    with pytest.raises(BackmarkError, match="differ in count"):
        dataclasses.replace(small_key, label_openings=small_key.label_openings[:-1])
    with pytest.raises(BackmarkError, match="uint8"):
        dataclasses.replace(small_key, images=small_key.images.astype(np.float32))
