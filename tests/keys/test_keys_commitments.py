"""Commitments: the documented construction, binding, domain separation, and hiding in the vk file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from backmark.keys import VK_NAME, MarkingKey, generate_key, save_key_pair
from backmark.keys import commitments as com
from backmark.keys.model import VerificationKey


def seed_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def image(seed: int = 0, shape: tuple[int, int, int] = (3, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def bits_differ(a: bytes, b: bytes) -> int:
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))


def test_commitment_is_the_documented_construction() -> None:
    # keys live for years: the byte layout must not drift
    img, r = image(), bytes(range(32))
    payload = b"u8" + struct.pack(">III", 3, 8, 8) + img.tobytes()
    assert com.encode_image(img) == payload
    tag = b"backmark/v1/commit/image"
    assert com.commit_image(img, r) == hashlib.sha256(bytes([len(tag)]) + tag + r + payload).digest()
    label_tag = b"backmark/v1/commit/label"
    label_payload = struct.pack(">II", 4, 10)
    assert com.encode_label(4, 10) == label_payload
    assert (
        com.commit_label(4, 10, r)
        == hashlib.sha256(bytes([len(label_tag)]) + label_tag + r + label_payload).digest()
    )
    assert len(com.commit_image(img, r)) == 32


def test_encode_image_is_canonical_for_non_contiguous_arrays() -> None:
    img = image(1, (8, 8, 3)).transpose(2, 0, 1)  # a view, not C-contiguous
    assert not img.flags.c_contiguous
    assert com.encode_image(img) == com.encode_image(np.ascontiguousarray(img))


def test_binding_one_pixel() -> None:
    img, r = image(), secrets.token_bytes(32)
    base = com.commit_image(img, r)
    for index in [(0, 0, 0), (1, 4, 5), (2, 7, 7)]:
        changed = img.copy()
        changed[index] ^= 1
        assert com.commit_image(changed, r) != base
        assert not com.opens(base, com.IMAGE_TAG, r, com.encode_image(changed))


def test_binding_shape_is_committed() -> None:
    # the same 192 bytes as 3x8x8 and as 1x8x24 are different images
    img, r = image(), secrets.token_bytes(32)
    assert com.commit_image(img, r) != com.commit_image(img.reshape(1, 8, 24), r)


def test_binding_label_class_count_and_opening() -> None:
    r = secrets.token_bytes(32)
    base = com.commit_label(3, 10, r)
    assert all(com.commit_label(v, 10, r) != base for v in range(10) if v != 3)
    assert com.commit_label(3, 11, r) != base
    other = bytearray(r)
    other[31] ^= 1
    assert com.commit_label(3, 10, bytes(other)) != base
    assert com.commit_image(image(), bytes(other)) != com.commit_image(image(), r)


def test_domain_separation_between_images_and_labels() -> None:
    r = secrets.token_bytes(32)
    payload = com.encode_label(3, 10)
    label_commitment = com.commit_label(3, 10, r)
    assert com.commit(com.IMAGE_TAG, r, payload) != label_commitment
    assert com.opens(label_commitment, com.LABEL_TAG, r, payload)
    assert not com.opens(label_commitment, com.IMAGE_TAG, r, payload)
    img_payload = com.encode_image(image())
    assert not com.opens(com.commit_image(image(), r), com.LABEL_TAG, r, img_payload)
    assert com.IMAGE_TAG != com.LABEL_TAG


def test_opens_true_and_false() -> None:
    img, r = image(), secrets.token_bytes(32)
    c = com.commit_image(img, r)
    assert com.opens(c, com.IMAGE_TAG, r, com.encode_image(img))
    assert not com.opens(c, com.IMAGE_TAG, secrets.token_bytes(32), com.encode_image(img))
    flipped = bytearray(c)
    flipped[0] ^= 0x80
    assert not com.opens(bytes(flipped), com.IMAGE_TAG, r, com.encode_image(img))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: com.encode_image(np.zeros((3, 8, 8), dtype=np.float32)), "expected a uint8 .C, H, W. image"),
        (lambda: com.encode_image(np.zeros((8, 8), dtype=np.uint8)), "expected a uint8 .C, H, W. image"),
        (lambda: com.encode_label(10, 10), r"label 10 is outside 0\.\.9"),
        (lambda: com.encode_label(-1, 10), r"label -1 is outside 0\.\.9"),
        (lambda: com.commit(com.IMAGE_TAG, bytes(31), b"x"), "an opening must be 32 bytes, got 31"),
        (lambda: com.commit(com.IMAGE_TAG, bytes(33), b"x"), "an opening must be 32 bytes, got 33"),
    ],
)
def test_bad_values_are_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- hiding: what the public verification key reveals -------------------------------------------------


def _fresh_openings(mk: MarkingKey) -> MarkingKey:
    return dataclasses.replace(
        mk,
        image_openings=tuple(secrets.token_bytes(32) for _ in range(mk.n)),
        label_openings=tuple(secrets.token_bytes(32) for _ in range(mk.n)),
        seed_openings=tuple(secrets.token_bytes(32) for _ in range(mk.n)),
    )


def _all_commitments(vk: VerificationKey) -> list[bytes]:
    return list(vk.image_commitments) + list(vk.label_commitments) + list(vk.seed_commitments)


def test_vk_file_holds_no_images_labels_or_openings(tmp_path: Path, rgb_key: MarkingKey) -> None:
    save_key_pair(rgb_key, tmp_path)
    raw = (tmp_path / VK_NAME).read_bytes()
    doc = json.loads(raw)
    assert set(doc) == {
        "format",
        "version",
        "algorithm",
        "n",
        "num_classes",
        "input_shape",
        "kind",
        "created",
        "image_commitments",
        "label_commitments",
        "seed_commitments",
        "derivation",
        "digest",
    }
    for forbidden in ("labels", "images", "openings", "master_seed", "seed", "source", "pixels"):
        assert f'"{forbidden}"'.encode() not in raw
    labels = [int(v) for v in rgb_key.labels]
    assert all(value != labels for value in doc.values())
    text = raw.decode()
    assert rgb_key.master_seed is not None
    assert rgb_key.master_seed.hex() not in text
    for r, s in zip(rgb_key.image_openings, rgb_key.label_openings, strict=True):
        assert r.hex() not in text and s.hex() not in text
    for img in rgb_key.images:
        assert img.tobytes()[:16].hex() not in text
        assert img.tobytes()[:16] not in raw
    # only the commitments themselves are long hex strings
    assert all(len(c) == 64 for c in doc["image_commitments"] + doc["label_commitments"])


def test_same_triggers_with_other_openings_give_unrelated_commitments(rgb_key: MarkingKey) -> None:
    first = rgb_key.verification_key()
    second = _fresh_openings(rgb_key).verification_key()
    a, b = _all_commitments(first), _all_commitments(second)
    assert not set(a) & set(b)
    # about half of all bits differ, as for independent random strings (40 x 256 bits)
    fraction = sum(bits_differ(x, y) for x, y in zip(a, b, strict=True)) / (256 * len(a))
    assert 0.45 < fraction < 0.55
    assert first.digest != second.digest


def test_equal_labels_have_unlinkable_commitments(rgb_key: MarkingKey) -> None:
    vk = rgb_key.verification_key()
    labels = [int(v) for v in rgb_key.labels]
    repeated = [v for v in set(labels) if labels.count(v) >= 2]
    assert repeated, "a 20-trigger key over 10 classes repeats some label"
    for value in repeated:
        commitments = [vk.label_commitments[i] for i, v in enumerate(labels) if v == value]
        assert len(set(commitments)) == len(commitments)
    assert len(set(vk.label_commitments)) == vk.n


def test_two_keys_with_identical_labels_share_no_image_or_label_commitment() -> None:
    # One master seed makes one key, seed commitments included (they hide the seeds as long as the
    # master seed is secret); the image and label commitments still get fresh openings.
    seed = seed_of("identical labels")
    one = generate_key(num_classes=10, input_shape=(1, 8, 8), size=30, kind="noise", seed=seed)
    two = generate_key(num_classes=10, input_shape=(1, 8, 8), size=30, kind="noise", seed=seed)
    assert np.array_equal(one.labels, two.labels) and np.array_equal(one.images, two.images)
    assert one.verification_key().seed_commitments == two.verification_key().seed_commitments
    a = list(one.verification_key().image_commitments) + list(one.verification_key().label_commitments)
    b = list(two.verification_key().image_commitments) + list(two.verification_key().label_commitments)
    assert not set(a) & set(b)
    fraction = sum(bits_differ(x, y) for x, y in zip(a, b, strict=True)) / (256 * len(a))
    assert 0.45 < fraction < 0.55
