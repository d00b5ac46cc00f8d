"""Ed25519 keys and signatures that OpenSSL accepts and backmark must not: small order, y >= p, S >= L.

The identity point as a public key with R = identity and S = 0 "verifies" for every message under
OpenSSL (asserted below, so this file shows why the checks are needed); backmark refuses it, the other
seven points of small order, their non-canonical encodings and every y >= p, in keys and in R.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from backmark.errors import BackmarkError
from backmark.identity import (
    PublicIdentity,
    check_document_signature,
    load_public_identity,
    new_identity,
    sign_document,
    verify_ed25519,
)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493

# The 8 points of small order, canonically encoded (order 1, 2, 4, 4, 8, 8, 8, 8).
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
]
# Non-canonical encodings of small-order points: x = 0 with the sign bit set (y = 1, y = -1), and
# y + p for y = 0 and y = 1 (with either sign bit).
NON_CANONICAL_SMALL = [
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
]
# Every other y >= p (p + 2 .. 2^255 - 1), with either sign bit.
NON_CANONICAL_OTHER = [
    (y | sign).to_bytes(32, "little").hex() for y in range(P + 2, 2**255) for sign in (0, 2**255)
]
BAD_POINTS = SMALL_ORDER + NON_CANONICAL_SMALL + NON_CANONICAL_OTHER


def test_openssl_alone_accepts_the_identity_forgery() -> None:
    """Why backmark checks encodings itself: OpenSSL verifies R = identity, S = 0 under the identity key."""
    forged = bytes.fromhex(SMALL_ORDER[0]) + bytes(32)
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(SMALL_ORDER[0])).verify(forged, b"any message")
    assert not verify_ed25519(bytes.fromhex(SMALL_ORDER[0]), forged, b"any message")


@pytest.mark.parametrize("point", BAD_POINTS)
def test_a_bad_point_is_never_a_key_nor_an_r(point: str) -> None:
    raw = bytes.fromhex(point)
    with pytest.raises(BackmarkError, match=r"small order|not canonically encoded"):
        PublicIdentity(raw)
    message = b"backmark"
    # as the key, with R = that point (or the identity) and S = 0 / 1: the classic forgeries
    for r in (raw, bytes.fromhex(SMALL_ORDER[0])):
        for s in (0, 1):
            assert not verify_ed25519(raw, r + s.to_bytes(32, "little"), message)
    # as R in a signature under a sound key
    sound = new_identity()
    good = sound.sign(message)
    assert verify_ed25519(sound.public.raw, good, message)
    assert not verify_ed25519(sound.public.raw, raw + good[32:], message)


@pytest.mark.parametrize("point", SMALL_ORDER + NON_CANONICAL_SMALL)
def test_a_document_signed_by_a_small_order_key_is_refused(point: str) -> None:
    """The registry's forgery: a document "signed" by a small-order key with R = identity, S = 0."""
    raw = bytes.fromhex(point)
    doc = {
        "hello": "world",
        "signature": {
            "algorithm": "ed25519",
            "public_key": base64.b64encode(raw).decode(),
            "fingerprint": hashlib.sha256(raw).hexdigest(),
            "purpose": "registry-submission",
            "value": base64.b64encode(bytes.fromhex(SMALL_ORDER[0]) + bytes(32)).decode(),
        },
    }
    with pytest.raises(BackmarkError, match=r"small order|not canonically encoded"):
        check_document_signature(doc, "registry-submission")


def test_s_not_below_l_is_refused() -> None:
    identity = new_identity()
    message = b"backmark"
    good = identity.sign(message)
    s = int.from_bytes(good[32:], "little")
    for bad_s in (s + L, L, 2**256 - 1):
        if bad_s < 2**256:
            malleated = good[:32] + bad_s.to_bytes(32, "little")
            assert not verify_ed25519(identity.public.raw, malleated, message)


def test_sound_signatures_still_verify_and_any_change_fails() -> None:
    identity = new_identity()
    doc = sign_document(identity, {"a": 1}, "test-purpose")
    assert check_document_signature(doc, "test-purpose") == identity.public
    with pytest.raises(BackmarkError):
        check_document_signature({**doc, "a": 2}, "test-purpose")
    with pytest.raises(InvalidSignature):  # the raw primitive, for reference
        Ed25519PublicKey.from_public_bytes(identity.public.raw).verify(bytes(64), b"x")


@pytest.mark.parametrize("point", SMALL_ORDER[:2] + NON_CANONICAL_SMALL[:2])
def test_an_identity_file_with_a_small_order_key_is_refused(point: str, tmp_path: Path) -> None:
    raw = bytes.fromhex(point)
    doc = {
        "format": "backmark-identity",
        "version": 1,
        "algorithm": "ed25519",
        "public_key": base64.b64encode(raw).decode(),
        "fingerprint": hashlib.sha256(raw).hexdigest(),
    }
    (tmp_path / "identity.pub.json").write_text(json.dumps(doc))
    with pytest.raises(BackmarkError, match=r"small order|not canonically encoded"):
        load_public_identity(tmp_path)
    with pytest.raises(BackmarkError, match="version"):
        PublicIdentity.from_json({**doc, "version": True})
