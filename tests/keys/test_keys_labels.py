"""Per-item seeds and uniform labels: range, determinism, and no bias (the binomial test relies on it)."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter

import pytest

from backmark.keys.labels import SEED_BYTES, item_seed, uniform_label


def seeds(count: int, tag: str = "label-test") -> list[bytes]:
    return [hashlib.sha256(f"{tag}-{i}".encode()).digest() for i in range(count)]


def chi_square(counts: Counter[int], categories: int, total: int) -> float:
    expected = total / categories
    return sum((counts.get(c, 0) - expected) ** 2 / expected for c in range(categories))


@pytest.mark.parametrize("num_classes", [2, 3, 7, 10, 100, 1000, 2**40 + 3])
def test_labels_are_in_range(num_classes: int) -> None:
    labels = [uniform_label(s, num_classes) for s in seeds(500)]
    assert all(isinstance(v, int) and 0 <= v < num_classes for v in labels)


def test_labels_are_deterministic() -> None:
    for s in seeds(50):
        assert uniform_label(s, 10) == uniform_label(s, 10)
        assert uniform_label(bytes(s), 7) == uniform_label(s, 7)


@pytest.mark.parametrize(("num_classes", "bound"), [(10, 40.0), (7, 35.0), (2, 20.0)])
def test_labels_are_unbiased(num_classes: int, bound: float) -> None:
    # the 99.99% quantiles of chi-square with 9, 6 and 1 degrees of freedom are 33.7, 27.9 and 15.1
    total = 20000
    counts = Counter(uniform_label(s, num_classes) for s in seeds(total))
    assert set(counts) == set(range(num_classes))
    assert chi_square(counts, num_classes, total) < bound


def test_rejection_sampling_removes_modulo_bias() -> None:
    # C = 3 * 2**62: a plain "x % C" on 64 bits would put half of all labels below 2**62 instead of a third
    num_classes = 3 * 2**62
    total = 6000
    thirds = Counter(uniform_label(s, num_classes) // 2**62 for s in seeds(total, "big-c"))
    assert set(thirds) == {0, 1, 2}
    assert chi_square(thirds, 3, total) < 25.0  # 99.99% quantile for 2 dof is 18.4
    assert thirds[0] / total < 0.4


def test_rejection_sampling_with_many_rejections_stays_uniform() -> None:
    # C just above 2**63: about half of all 64-bit words are rejected, so extra hash blocks are needed
    num_classes = 2**63 + 1
    total = 4000
    halves = Counter(uniform_label(s, num_classes) >= 2**62 for s in seeds(total, "reject"))
    assert abs(halves[True] - total / 2) < 4 * (total / 4) ** 0.5


def test_uniform_label_rejects_fewer_than_two_classes() -> None:
    with pytest.raises(ValueError, match="need at least 2 classes, got 1"):
        uniform_label(bytes(32), 1)


def test_item_seed_differs_per_index_and_master() -> None:
    master = hashlib.sha256(b"master").digest()
    items = [item_seed(master, i) for i in range(2000)]
    assert len(set(items)) == len(items)
    assert all(len(s) == SEED_BYTES for s in items)
    assert item_seed(master, 5) == items[5]
    other = hashlib.sha256(b"other master").digest()
    assert all(item_seed(other, i) != items[i] for i in range(100))


def test_labels_of_consecutive_items_are_not_correlated() -> None:
    master = hashlib.sha256(b"pairs").digest()
    labels = [uniform_label(item_seed(master, i), 10) for i in range(20001)]
    pairs = Counter(a * 10 + b for a, b in itertools.pairwise(labels))
    assert chi_square(pairs, 100, 20000) < 170.0  # 99.99% quantile for 99 dof is about 154
