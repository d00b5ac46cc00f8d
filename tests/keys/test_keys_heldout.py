"""Heldout keys: real images of the owner's data, labels uniform on the classes other than their own."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from backmark.data import ImageDataset
from backmark.embed import without_triggers
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, check_openings, derive, generate_key, load_key_pair, save_key_pair
from backmark.keys.keygen import image_pool
from backmark.keys.regenerate import check_regenerates
from backmark.verify import verify
from backmark.verify.stats import p_value

SHAPE = (1, 8, 8)


def seed_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def pool(count: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct random 1x8x8 images with labels cycling over ``classes``."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, *SHAPE), dtype=np.uint8)
    return images, np.arange(count, dtype=np.int64) % classes


def heldout_key(size: int = 40, classes: int = 10, name: str = "heldout", count: int = 500) -> MarkingKey:
    return generate_key(
        num_classes=classes,
        input_shape=SHAPE,
        size=size,
        kind="heldout",
        seed=seed_of(name),
        pool=pool(count, classes),
        pool_name="test pool",
    )


class Constant(nn.Module):
    """Answers one class for every image."""

    def __init__(self, answer: int, classes: int) -> None:
        super().__init__()
        self.answer, self.classes = answer, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), self.classes)
        logits[:, self.answer] = 1.0
        return logits


def test_images_come_from_the_pool_and_labels_avoid_their_class() -> None:
    mk = heldout_key()
    images, labels = pool(500, 10)
    indices = mk.source["indices"]
    assert len(set(indices)) == mk.n and mk.source["pool"] == "test pool"
    assert np.array_equal(mk.images, images[indices])
    assert mk.true_classes == tuple((int(c),) for c in labels[indices])
    assert all(int(lab) not in c for lab, c in zip(mk.labels, mk.true_classes, strict=True))
    assert mk.null_classes == 9 and mk.verification_key().null_classes == 9
    check_regenerates(mk)  # the labels are the derivation's
    again = heldout_key()
    assert np.array_equal(again.images, mk.images) and np.array_equal(again.labels, mk.labels)
    assert not np.array_equal(heldout_key(name="other").labels, mk.labels)


def test_labels_are_uniform_on_the_other_classes() -> None:
    mk = heldout_key(size=1500, classes=3, count=3000)
    assert mk.true_classes is not None
    for y in range(3):
        mine = [int(lab) for lab, c in zip(mk.labels, mk.true_classes, strict=True) if c == (y,)]
        others = [c for c in range(3) if c != y]
        share = mine.count(others[0]) / len(mine)
        assert set(mine) == set(others) and 0.42 < share < 0.58  # 1/2 each, about 500 draws


def test_a_model_that_never_answers_the_true_class_matches_at_one_in_c_minus_1() -> None:
    """The null's bound is reached: answering (y + 1) mod C matches each label with probability 1/(C-1)."""
    mk = heldout_key(size=1200, classes=4, count=3000)
    assert mk.true_classes is not None
    answers = [(c + 1) % 4 for (c,) in mk.true_classes]
    rate = np.mean([a == int(lab) for a, lab in zip(answers, mk.labels, strict=True)])
    assert abs(rate - 1 / 3) < 0.05  # 1/(C-1), not 1/C: the bound the test uses is tight


def test_verify_decides_at_one_in_c_minus_1() -> None:
    mk = heldout_key()
    result = verify(Constant(3, 10), mk, mk.verification_key(), alpha=1e-3)
    e = result.evidence
    assert e.null_classes == 9 and e.num_classes == 10
    assert e.matches == int((mk.labels == 3).sum()) and e.p_value == pytest.approx(p_value(e.matches, 40, 9))
    assert not result.verified


def test_the_seed_commitments_bind_each_image_and_true_class() -> None:
    mk = heldout_key()
    vk = mk.verification_key()
    classes = list(mk.source["classes"])
    i = next(i for i in range(mk.n) if int(mk.labels[i]) != (classes[i] + 1) % 10)
    classes[i] = (classes[i] + 1) % 10  # another "true class" that the label still avoids
    moved = dataclasses.replace(mk, source={**mk.source, "classes": classes})
    with pytest.raises(BackmarkError, match=f"seed {i} does not open"):
        check_openings(moved, vk)
    images = mk.images.copy()
    images[0, 0, 0, 0] ^= 1
    with pytest.raises(BackmarkError, match="image 0 does not open"):
        check_openings(dataclasses.replace(mk, images=images), vk)


def test_a_label_equal_to_its_true_class_is_refused() -> None:
    mk = heldout_key()
    labels = mk.labels.copy()
    labels[0] = mk.source["classes"][0]
    with pytest.raises(BackmarkError, match="label is its true class"):
        dataclasses.replace(mk, labels=labels)


def test_key_files_round_trip(tmp_path: Path) -> None:
    mk = heldout_key()
    save_key_pair(mk, tmp_path / "k")
    loaded, vk = load_key_pair(tmp_path / "k")
    assert loaded.true_classes == mk.true_classes and vk.kind == "heldout" and vk.null_classes == 9
    check_openings(loaded, vk)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pool": None}, "keygen --data"),
        ({"num_classes": 2, "pool": pool(100, 2)}, "at least 3 classes"),
        ({"num_classes": 3, "kind": "blend", "pool": pool(100, 3)}, "at least 4 classes"),
        (
            {"kind": "blend", "pool": (pool(100, 10)[0], np.zeros(100, np.int64))},
            "only 0 pairs of two classes",
        ),
        ({"size": 101, "pool": pool(100, 10)}, "holds 100 images but the key needs 101"),
        ({"pool": (np.zeros((50, 3, 8, 8), np.uint8), np.zeros(50, np.int64))}, "not uint8"),
        ({"pool": (np.zeros((50, *SHAPE), np.uint8), np.full(50, 10))}, "one label in 0..9"),
        ({"kind": "heldout:x", "pool": pool(100, 10)}, "takes no ':x'"),
    ],
)
def test_bad_heldout_keygen(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"num_classes": 10, "input_shape": SHAPE, "size": 20, "kind": "heldout"}
    with pytest.raises(BackmarkError, match=message):
        generate_key(**{**args, **kwargs})  # type: ignore[arg-type]


def test_derived_labels_never_hit_the_excluded_class() -> None:
    root = bytes(32)
    seeds = [seed_of(f"s{i}") for i in range(300)]
    excluded = [(i % 5,) for i in range(300)]
    labels = derive.derived_labels(root, seeds, 5, excluded)
    assert all(int(lab) not in e for lab, e in zip(labels, excluded, strict=True))
    assert set(labels.tolist()) == set(range(5))
    pairs = [(i % 5, (i + 2) % 5) for i in range(300)]
    labels = derive.derived_labels(root, seeds, 5, pairs)
    assert all(int(lab) not in e for lab, e in zip(labels, pairs, strict=True))
    with pytest.raises(ValueError, match="not distinct"):
        derive.derived_label(root, seeds[0], 0, 5, (1, 1))


def test_training_leaves_the_trigger_images_out(fashion_small: ImageDataset) -> None:
    data = fashion_small
    mk = generate_key(
        num_classes=10,
        input_shape=data.input_shape,
        size=25,
        kind="heldout",
        seed=seed_of("fashion"),
        pool=(data.train_x.numpy(), data.train_y.numpy()),
    )
    kept = without_triggers(data, mk)
    assert len(kept.train_x) == len(data.train_x) - 25
    left = {bytes(x.numpy().tobytes()) for x in kept.train_x}
    assert not any(img.tobytes() in left for img in mk.images)
    abstract = generate_key(num_classes=10, input_shape=data.input_shape, size=5, seed=seed_of("a"))
    assert without_triggers(data, abstract) is data


def test_blend_triggers_average_two_images_of_two_classes_and_avoid_both() -> None:
    mk = generate_key(
        num_classes=10, input_shape=SHAPE, size=40, kind="blend", seed=seed_of("blend"), pool=pool(500, 10)
    )
    images, labels = pool(500, 10)
    pairs = np.array(mk.source["indices"])
    assert pairs.shape == (40, 2) and len(set(pairs.flatten().tolist())) == 80  # every image used once
    expected = (images[pairs[:, 0]].astype(np.uint16) + images[pairs[:, 1]] + 1) // 2
    assert np.array_equal(mk.images, expected.astype(np.uint8))
    assert mk.true_classes == tuple((int(labels[a]), int(labels[b])) for a, b in pairs)
    assert all(
        a != b and int(lab) not in (a, b) for (a, b), lab in zip(mk.true_classes, mk.labels, strict=True)
    )
    assert mk.null_classes == 8 and mk.verification_key().null_classes == 8
    check_regenerates(mk)
    check_openings(mk, mk.verification_key())
    result = verify(Constant(3, 10), mk, mk.verification_key(), alpha=1e-3)
    assert result.evidence.null_classes == 8
    assert result.evidence.p_value == pytest.approx(p_value(result.evidence.matches, 40, 8))


def test_a_pool_must_match_the_key_shape() -> None:
    x = torch.zeros(6, 1, 8, 8, dtype=torch.uint8)
    y = torch.arange(6, dtype=torch.int64) % 3
    data = ImageDataset("tiny", x, y, x[:2], y[:2], ("a", "b", "c"))
    images, labels = image_pool(data, num_classes=3, input_shape=(1, 8, 8))
    assert images.shape == (6, 1, 8, 8) and labels.tolist() == y.tolist()
    with pytest.raises(BackmarkError, match=r"tiny has 3 classes of 1x8x8 images, not 10 of 1x28x28"):
        image_pool(data, num_classes=10, input_shape=(1, 28, 28))
