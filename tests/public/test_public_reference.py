"""Bit-exact regeneration: stored proofs, made once, must check on every machine and version.

``data/{abstract,noise}-{vk,challenge,proof}.json`` were made on 2026-12-01 with backmark's keygen
(master seed SHA-256("backmark reference KIND"), 12 items, 10 classes) and ``prove`` for a fixed
challenge of 4 items. The proofs hold the images as they were generated then. Checking them regenerates
every opened image and label from its seed and the key's root, here and now, and compares them bit for
bit: a change in the generators, in numpy's bit streams or in the derivation fails this test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backmark.keys import load_verification_key
from backmark.public import check_openings_public, load_challenge, load_proof

DATA = Path(__file__).parent / "data"
ROOTS = {
    "abstract": "c236c65a75000b79d38abf057cc134cb0541f5adc172fb810c3c5b98b24458ae",
    "noise": "11e68222ef51ea85c2cf843c82aafc590bdf3d634e1915e94d6d0dccf522f010",
}


@pytest.mark.parametrize("kind", sorted(ROOTS))
def test_stored_proofs_regenerate_bit_for_bit(kind: str) -> None:
    vk = load_verification_key(DATA / f"{kind}-vk.json")
    challenge = load_challenge(DATA / f"{kind}-challenge.json")
    proof = load_proof(DATA / f"{kind}-proof.json")
    assert vk.root().hex() == ROOTS[kind]
    opened = check_openings_public(vk, challenge, proof)
    assert opened.triggers_verifiable and opened.reason is None
    assert len(opened.indices) == 4 and opened.images.shape == (4, *vk.input_shape)
