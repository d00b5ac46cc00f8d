"""Which items a proof opens: the public order, slots, and the challenge's choice among unspent slots."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from backmark.public.selection import (
    public_order,
    select_slot,
    shuffled,
    slot_choices,
    slot_count,
    slot_indices,
    slots_left,
)

DIGEST = hashlib.sha256(b"a verification key").hexdigest()
OTHER = hashlib.sha256(b"another verification key").hexdigest()


def test_the_public_order_is_a_fixed_permutation_of_the_key() -> None:
    order = public_order(DIGEST, 100)
    assert sorted(order) == list(range(100))
    assert order == public_order(DIGEST, 100)
    assert order != public_order(OTHER, 100)
    # pinned: every machine and version must compute the same order from the same digest
    assert order[:8] == PINNED_ORDER


PINNED_ORDER = [0, 24, 21, 22, 80, 27, 51, 72]


def test_shuffles_are_uniform() -> None:
    # every permutation of 4 items, 24 of them, about equally often over 4800 shuffles
    counts = Counter(tuple(shuffled(4, b"test", i.to_bytes(4, "big"))) for i in range(4800))
    assert len(counts) == 24
    chi2 = sum((c - 200) ** 2 / 200 for c in counts.values())
    assert chi2 < 60  # 99.99% quantile of chi-square with 23 degrees of freedom is about 56


@pytest.mark.parametrize(("n", "size"), [(100, 20), (100, 30), (60, 7), (10, 10)])
def test_slots_are_disjoint_and_lie_in_the_key(n: int, size: int) -> None:
    slots = [set(slot_indices(DIGEST, n, size, s)) for s in range(slot_count(n, size))]
    assert len(slots) == n // size and all(len(s) == size for s in slots)
    union = set().union(*slots)
    assert len(union) == size * (n // size) and union <= set(range(n))


def test_the_challenge_picks_the_first_unspent_slot_in_its_order() -> None:
    challenge = hashlib.sha256(b"challenge").hexdigest()
    first = select_slot(challenge, DIGEST, 100, 20, spent=())
    assert first is not None
    slot, items = first
    assert items == slot_indices(DIGEST, 100, 20, slot)
    # one spent item in that slot moves the choice to another slot, disjoint from it
    second = select_slot(challenge, DIGEST, 100, 20, spent={items[3]})
    assert second is not None and second[0] != slot and not set(second[1]) & set(items)
    # other challenges pick other slots (5 slots: 40 challenges pick each of them)
    picked = set()
    for i in range(40):
        chosen = select_slot(hashlib.sha256(bytes([i])).hexdigest(), DIGEST, 100, 20, ())
        assert chosen is not None
        picked.add(chosen[0])
    assert picked == set(range(5))


def test_nothing_is_selected_when_every_slot_holds_a_spent_item() -> None:
    spent = [slot_indices(DIGEST, 100, 25, s)[0] for s in range(4)]
    assert slots_left(DIGEST, 100, 25, spent) == 0
    assert select_slot("00" * 32, DIGEST, 100, 25, spent) is None
    assert slots_left(DIGEST, 100, 25, spent[:1]) == 3


def test_slot_choices_is_the_number_of_sets_the_owner_could_open() -> None:
    assert slot_choices(100, 20) == 5
    assert slot_choices(100, 30) == 3
    assert slot_choices(10, None) == sum(10 // s for s in range(1, 11)) == 27
