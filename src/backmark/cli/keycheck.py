"""``backmark keycheck``: rebuild a generated key from its seed and compare it bit for bit."""

from __future__ import annotations

import argparse

from backmark.keys import check_regenerates, load_marking_key, resolve_key_paths


def keycheck(args: argparse.Namespace) -> int:
    """Exit 0 when every image and label regenerates; a difference, or a key that cannot be rebuilt
    (no seed, or a folder kind), is an error naming the first differing trigger (exit 2)."""
    mk = load_marking_key(resolve_key_paths(args.key, need_vk=False)[0])  # the file intact first
    check_regenerates(mk)
    if args.quiet:
        return 0
    key_id = mk.verification_key().key_id
    if mk.true_classes is not None:
        print(
            f"key {key_id}: all {mk.n} {mk.kind} trigger labels are the ones its master seed draws from the "
            "classes of none of the real images it is made of; the images are bound by the key's seed "
            "commitments, which every load checks"
        )
    else:
        print(
            f"key {key_id}: all {mk.n} {mk.kind} trigger images and their labels are the ones its master "
            "seed generates, bit for bit"
        )
    return 0
