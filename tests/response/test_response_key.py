"""The response key file: versioned, 0600, atomic, never overwritten without force, damage refused."""

from __future__ import annotations

import hashlib
import stat
import struct
from fractions import Fraction
from pathlib import Path

import pytest

from backmark.errors import BackmarkError
from backmark.response import ResponseKey, generate_response_key, load_response_key, save_response_key
from backmark.response.key import RK_MAGIC


def test_round_trip_mode_and_rate(tmp_path: Path) -> None:
    key = generate_response_key(rate="0.02")
    path = save_response_key(key, tmp_path / "r.bmrk")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = load_response_key(path)
    assert back == key and back.rate == Fraction(1, 50)
    assert key.secret.hex() not in repr(key)


def test_file_bytes_are_those_of_earlier_versions(tmp_path: Path) -> None:
    # the SHA-256 of this key's file as written before the container moved to infra/keyfile.py
    key = ResponseKey(secret=b"\x02" * 32, rate=Fraction(1, 100), created="2025-01-01T00:00:00+00:00")
    path = save_response_key(key, tmp_path / "r.bmrk")
    raw = path.read_bytes()
    assert len(raw) == 216
    digest = "aeafd3faeb0d7d7606362a40283af7bc47bf96f8fb6108104ba8e9bdc66cf88b"
    assert hashlib.sha256(raw).hexdigest() == digest
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_response_key(path) == key


def test_never_overwritten_without_force(tmp_path: Path, rkey: ResponseKey) -> None:
    path = save_response_key(rkey, tmp_path / "r.bmrk")
    other = generate_response_key()
    with pytest.raises(BackmarkError, match="already exists"):
        save_response_key(other, path)
    assert load_response_key(path) == rkey
    save_response_key(other, path, force=True)
    assert load_response_key(path) == other


@pytest.mark.parametrize("where", [0, 20, -40, -1])
def test_any_changed_byte_is_refused(tmp_path: Path, rkey: ResponseKey, where: int) -> None:
    path = save_response_key(rkey, tmp_path / "r.bmrk")
    raw = bytearray(path.read_bytes())
    raw[where] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(BackmarkError, match=r"magic|damaged"):
        load_response_key(path)


def test_a_resealed_header_that_is_not_an_object_is_refused(tmp_path: Path, rkey: ResponseKey) -> None:
    path = save_response_key(rkey, tmp_path / "r.bmrk")
    body = RK_MAGIC + struct.pack(">I", 3) + b"[1]" + rkey.secret  # with a checksum anyone can compute
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(BackmarkError, match="valid checksum but an unreadable header: not a JSON object"):
        load_response_key(path)


def test_truncated_and_missing(tmp_path: Path, rkey: ResponseKey) -> None:
    path = save_response_key(rkey, tmp_path / "r.bmrk")
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(BackmarkError, match="truncated"):
        load_response_key(path)
    with pytest.raises(BackmarkError, match=r"response key .*none\.bmrk not found"):
        load_response_key(tmp_path / "none.bmrk")


@pytest.mark.parametrize("rate", ["0", "-0.1", "0.6", "x", "nan"])
def test_bad_rates_are_refused(rate: str) -> None:
    with pytest.raises(BackmarkError, match="rate"):
        generate_response_key(rate=rate)
