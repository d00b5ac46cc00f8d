"""Which items a proof opens: slots of a public order, one chosen by the verifier's challenge.

The key's items are laid out in a public order, a permutation of 0..n-1 drawn from the verification
key's digest, so it was fixed when the key was made, before any suspect model existed. For an opening
size L the order is cut into m = n // L *slots* of L consecutive items. A proof opens one whole slot:
the first slot, in an order drawn from the challenge and the key's digest, that holds no item spent by
an earlier proof.

Why slots, and why the p-value is multiplied by the number of them: each slot is a sample of the key
fixed before the suspect existed, so under the null hypothesis its match count is exactly
Binomial(L, 1/C). The verifier cannot know which items earlier proofs spent (that record is the
owner's), so a dishonest owner could claim slots were spent to steer the challenge to the slot that
matches best. Whatever it claims, the opened slot is one of the m slots of size L, so by the union bound
the chance that *some* slot passes the test at alpha / m is at most alpha: the corrected p-value
``min(1, m * p)`` is valid however the owner behaves. An honest owner pays a factor m (a few matches
more, see docs/protocol.md); the open choice of any L items would have allowed no such bound. When the
challenge does not fix the size, the owner also chose L, and the factor is the number of slots of every
size (:func:`slot_choices`).

Random choices here use SHA-256 in counter mode with rejection sampling, never numpy or ``random``, so
every machine and version computes the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

_ORDER_TAG = b"backmark/v1/public-order"
_SLOT_TAG = b"backmark/v1/slot-order"


class _Stream:
    """Unbiased integers from SHA-256(tag || seed || counter)."""

    def __init__(self, tag: bytes, seed: bytes) -> None:
        self._prefix = tag + seed
        self._counter = 0
        self._pool: list[int] = []

    def _word(self) -> int:
        if not self._pool:
            block = hashlib.sha256(self._prefix + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._pool = [int.from_bytes(block[i : i + 8], "big") for i in range(24, -8, -8)]
        return self._pool.pop()

    def below(self, bound: int) -> int:
        """An integer uniform on 0..bound-1, exactly (rejection sampling on 64-bit words)."""
        limit = (2**64 // bound) * bound
        while True:
            value = self._word()
            if value < limit:
                return value % bound


def shuffled(count: int, tag: bytes, seed: bytes) -> list[int]:
    """A uniformly random permutation of 0..count-1 (Fisher-Yates) drawn from ``tag`` and ``seed``."""
    items = list(range(count))
    stream = _Stream(tag, seed)
    for i in range(count - 1, 0, -1):
        j = stream.below(i + 1)
        items[i], items[j] = items[j], items[i]
    return items


def public_order(vk_digest: str, n: int) -> list[int]:
    """The key's public order of its ``n`` items, from the verification key's digest."""
    return shuffled(n, _ORDER_TAG, bytes.fromhex(vk_digest))


def slot_count(n: int, size: int) -> int:
    """How many slots of ``size`` items a key of ``n`` items has."""
    return n // size


def slot_choices(n: int, size: int | None) -> int:
    """How many item sets a proof of ``size`` items (``None``: any size) could open: the p-value factor."""
    if size is not None:
        return slot_count(n, size)
    return sum(n // s for s in range(1, n + 1))


def slot_indices(vk_digest: str, n: int, size: int, slot: int) -> tuple[int, ...]:
    """The items of slot ``slot`` of ``size``, sorted."""
    order = public_order(vk_digest, n)
    return tuple(sorted(order[slot * size : (slot + 1) * size]))


def slot_order(challenge_digest: str, vk_digest: str, size: int, slots: int) -> list[int]:
    """The order in which the challenge offers the ``slots`` slots of ``size``."""
    seed = bytes.fromhex(challenge_digest) + bytes.fromhex(vk_digest) + size.to_bytes(8, "big")
    return shuffled(slots, _SLOT_TAG, seed)


def select_slot(
    challenge_digest: str, vk_digest: str, n: int, size: int, spent: Collection[int]
) -> tuple[int, tuple[int, ...]] | None:
    """The slot the challenge selects, and its items: the first in the challenge's slot order that holds
    no ``spent`` item; None when every slot of ``size`` holds a spent item."""
    order = public_order(vk_digest, n)
    spent_set = set(spent)
    for slot in slot_order(challenge_digest, vk_digest, size, slot_count(n, size)):
        items = order[slot * size : (slot + 1) * size]
        if not spent_set.intersection(items):
            return slot, tuple(sorted(items))
    return None


def slots_left(vk_digest: str, n: int, size: int, spent: Collection[int]) -> int:
    """How many slots of ``size`` hold no spent item: the verifications of that size the key has left."""
    order = public_order(vk_digest, n)
    spent_set = set(spent)
    return sum(
        1
        for slot in range(slot_count(n, size))
        if not spent_set.intersection(order[slot * size : (slot + 1) * size])
    )
