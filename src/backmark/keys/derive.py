"""Verifiable triggers: every image and label of a key derived from committed per-item seeds.

A key of format 2 (what ``keygen`` makes) commits, besides each image and label, to each item's seed.
From those seed commitments alone comes the key's *root*; each item's randomness is then a hash of the
root, the item's seed and its index, and the item's label (every kind) and image (generated kinds) are
pure functions of that randomness. So whoever is shown an item's seed and the verification key can
regenerate the image and the label bit for bit, and:

- nobody can pick an image, then a seed whose label "fits" it: the label depends on the root, which
  depends on every item's seed commitment, so changing one item re-draws every label of the key;
- nobody can pick adversarial images for a generated kind: the image is what the generator makes of
  the item's randomness, which depends on the root too;
- trying many keys until one happens to match a suspect model ("grinding") is the only way left, and
  each try costs a memory-hard hash of the root (scrypt, 32 MiB, about 0.1 s here), and for a generated
  kind n new images and n queries of the suspect (real-image kinds keep their images, so one query of
  them serves every try). It buys a factor on the p-value, which is why alpha must be small and why a
  key registered before the suspect model existed cannot have been ground against it.

Derivation ``backmark-v2`` (this version must never change; a new one gets a new name)::

    seed_i   = SHA-256("backmark/v1/item-seed" || master || i as uint64)        (secret)
    q_i      = SHA-256("backmark/v2/seed-opening" || master || i as uint64)     (secret; hides seed_i)
    sc_i     = SHA-256(len(tag) || tag || q_i || seed_i)     with tag "backmark/v2/commit/seed"
    pre      = SHA-256("backmark/v2/root" || n, C, c, h, w as uint32 || kind || 0 || sc_1 .. sc_n)
    root     = scrypt(pre, salt="backmark/v2/root", N=2**15, r=8, p=1, 32 bytes)
    d_i      = SHA-256("backmark/v2/item" || root || seed_i || i as uint64)
    label_i  = uniform_label(d_i, C)           (rejection sampling: exactly uniform, see keys.labels)
    image_i  = GENERATOR[kind](d_i, (c, h, w)) (generated kinds: abstract, noise; pure integer and
                                                IEEE-exact arithmetic, see backmark.triggers._common)

Kinds ``heldout`` (a real image of the owner's data, of true class ``y_i``) and ``blend`` (the average of
two real images of distinct classes ``y_i, z_i``) bind the image and those classes E_i into the seed
commitment, so both are fixed before the root, and draw the label from the other C - |E_i| classes::

    sc_i     = SHA-256(len(tag) || tag || q_i || seed_i || E_i's classes as uint32 || encode_image(image_i))
    u_i      = uniform_label(d_i, C - |E_i|)
    label_i  = the u_i-th class (from 0, in increasing order) not in E_i   (heldout: u_i if u_i < y_i
                                                                            else u_i + 1)

Whatever images and classes were chosen, a model that never saw the key answers ``label_i`` with
probability at most 1/(C - |E_i|), independently across items (docs/heldout-triggers.md).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import numpy as np

from backmark.keys import commitments as com
from backmark.keys.labels import uniform_label

DERIVATION = "backmark-v2"
HELDOUT = "heldout"  # the trigger kind of real images whose labels avoid their true class
BLEND = "blend"  # the trigger kind of two real images of two classes, averaged; labels avoid both
REAL_PARTS = {HELDOUT: 1, BLEND: 2}  # kinds made of the owner's real images: how many images (and classes)
SEED_TAG = b"backmark/v2/commit/seed"
_ROOT_TAG = b"backmark/v2/root"
_ITEM_TAG = b"backmark/v2/item"
_OPENING_TAG = b"backmark/v2/seed-opening"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 2**26  # scrypt needs 128 * r * N bytes = 32 MiB


def seed_opening(master_seed: bytes, index: int) -> bytes:
    """The opening of item ``index``'s seed commitment, from the master seed (secret like it)."""
    return hashlib.sha256(_OPENING_TAG + master_seed + index.to_bytes(8, "big")).digest()


def bound_item(classes: Sequence[int], image: np.ndarray) -> bytes:
    """What a ``heldout`` or ``blend`` item's seed commitment binds besides its seed: the true classes of
    the real images it is made of, and its image."""
    return b"".join(struct.pack(">I", c) for c in classes) + com.encode_image(image)


def commit_seed(seed: bytes, opening: bytes, bound: bytes = b"") -> bytes:
    """The commitment to an item's 32-byte seed (and, for real-image kinds, :func:`bound_item`)."""
    if len(seed) != 32:
        raise ValueError(f"an item seed must be 32 bytes, got {len(seed)}")
    return com.commit(SEED_TAG, opening, seed + bound)


def seed_opens(commitment: bytes, seed: bytes, opening: bytes, bound: bytes = b"") -> bool:
    """True if ``commitment`` opens to ``seed`` (and ``bound``) with ``opening`` (constant time)."""
    return len(seed) == 32 and com.opens(commitment, SEED_TAG, opening, seed + bound)


def key_root(
    seed_commitments: Sequence[bytes], *, num_classes: int, input_shape: tuple[int, int, int], kind: str
) -> bytes:
    """The key's root: a memory-hard hash of its shape, class count, kind and every seed commitment."""
    c, h, w = input_shape
    pre = hashlib.sha256(
        _ROOT_TAG
        + struct.pack(">IIIII", len(seed_commitments), num_classes, c, h, w)
        + kind.encode()
        + b"\x00"
        + b"".join(seed_commitments)
    ).digest()
    return hashlib.scrypt(
        pre, salt=_ROOT_TAG, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


def item_randomness(root: bytes, seed: bytes, index: int) -> bytes:
    """The 32 bytes item ``index`` draws its label and (generated kinds) its image from."""
    return hashlib.sha256(_ITEM_TAG + root + seed + index.to_bytes(8, "big")).digest()


def derived_label(root: bytes, seed: bytes, index: int, num_classes: int, exclude: Sequence[int] = ()) -> int:
    """Item ``index``'s label: uniform on the classes 0..num_classes-1 that are not in ``exclude``."""
    randomness = item_randomness(root, seed, index)
    if not exclude:
        return uniform_label(randomness, num_classes)
    if len(set(exclude)) != len(exclude) or not all(0 <= c < num_classes for c in exclude):
        raise ValueError(f"excluded classes {list(exclude)} are not distinct classes of 0..{num_classes - 1}")
    allowed = [c for c in range(num_classes) if c not in exclude]
    return allowed[uniform_label(randomness, len(allowed))]


def derived_labels(
    root: bytes, seeds: Sequence[bytes], num_classes: int, exclude: Sequence[Sequence[int]] | None = None
) -> np.ndarray:
    """Every item's label, int64 (n,); with ``exclude``, item i's label avoids the classes ``exclude[i]``."""
    if exclude is not None and len(exclude) != len(seeds):
        raise ValueError(f"{len(exclude)} excluded class sets for {len(seeds)} items")
    return np.array(
        [
            derived_label(root, s, i, num_classes, () if exclude is None else exclude[i])
            for i, s in enumerate(seeds)
        ],
        dtype=np.int64,
    )
