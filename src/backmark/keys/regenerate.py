"""Rebuild a generated key from its master seed and compare it bit for bit.

A key of a generated kind (``abstract``, ``noise``) is a pure function of its 32-byte master seed (and,
for a format 2 key, of the openings of its seed commitments, which the key holds): every image comes
from a bit-stable generator and every label from the seed (:mod:`backmark.keys.labels`,
:mod:`backmark.keys.derive`). So
its holder, or an auditor given the seed, can check that the images and labels are exactly the ones
the seed makes, not images chosen afterwards. A ``folder`` key holds the user's own images, and a key
without a seed has labels from elsewhere; neither can be rebuilt. A ``heldout`` key's real images are
bound by its seed commitments (checked on every load); its labels are checked against the derivation.
"""

from __future__ import annotations

import numpy as np

from backmark.errors import BackmarkError
from backmark.keys import derive
from backmark.keys.keygen import derived_images, seeded_images, seeded_labels
from backmark.keys.model import MarkingKey
from backmark.triggers import get_trigger_kind


def check_regenerates(mk: MarkingKey) -> None:
    """Check that ``mk``'s images and labels are exactly those its master seed generates.

    Raises :class:`BackmarkError` naming the first trigger whose image or label differs, or saying why
    the key cannot be regenerated (no master seed, or a kind whose images are not generated).
    """
    if mk.master_seed is None:
        raise BackmarkError(
            "this key cannot be regenerated: it has no master seed (its labels were not drawn by keygen)"
        )
    kind = get_trigger_kind(mk.kind)
    if mk.true_classes is not None:  # heldout: real images, bound by the seed commitments; labels derived
        root = mk.verification_key().root()
        labels = derive.derived_labels(root, mk.item_seeds(), mk.num_classes, mk.true_classes)
        _compare_labels(mk, labels)
        return
    if kind.generate is None:
        raise BackmarkError(
            f"this key cannot be regenerated: its trigger kind {mk.kind} holds images read from files, "
            "not generated from its seed"
        )
    if mk.derivation is None:  # a format 1 key: items straight from the master seed
        images = seeded_images(kind.generate, mk.master_seed, mk.n, mk.input_shape)
        labels = seeded_labels(mk.master_seed, mk.n, mk.num_classes)
    else:
        seeds = mk.item_seeds()
        root = mk.verification_key().root()
        images = derived_images(kind.generate, root, seeds, mk.input_shape)
        labels = derive.derived_labels(root, seeds, mk.num_classes)
    for i in range(mk.n):
        if not np.array_equal(mk.images[i], images[i]):
            changed = int(np.count_nonzero(mk.images[i] != images[i]))
            raise BackmarkError(
                f"trigger image {i} is not the one the key's seed generates ({changed} of "
                f"{images[i].size} pixel values differ): the key was altered or made another way"
            )
    _compare_labels(mk, labels)


def _compare_labels(mk: MarkingKey, labels: np.ndarray) -> None:
    for i in range(mk.n):
        if int(mk.labels[i]) != int(labels[i]):
            raise BackmarkError(
                f"trigger label {i} is {int(mk.labels[i])} but the key's seed gives {int(labels[i])}: "
                "the key was altered or made another way"
            )
