"""The key files' binary container: the bytes written, the round trip, and each refusal in one line."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest

from backmark.errors import BackmarkError
from backmark.infra.keyfile import pack, unpack

MAGIC = b"TEST-KEY\n"


def sealed(header_text: bytes, payload: bytes = b"xyz") -> bytes:
    """A file with any header text and a checksum that matches (anyone can compute one)."""
    body = MAGIC + struct.pack(">I", len(header_text)) + header_text + payload
    return body + hashlib.sha256(body).digest()


def refusal(raw: bytes, **options: Any) -> str:
    with pytest.raises(BackmarkError) as info:
        unpack(raw, MAGIC, "k.bin", "test key", **options)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_pack_writes_the_layout() -> None:
    raw = pack(MAGIC, {"b": 1, "a": [2]}, b"\x00\xff")
    assert raw == sealed(b'{"a": [2], "b": 1}', b"\x00\xff")
    assert unpack(raw, MAGIC, "k.bin", "test key") == ({"a": [2], "b": 1}, b"\x00\xff")
    assert unpack(pack(MAGIC, {}, b""), MAGIC, "k.bin", "test key") == ({}, b"")


def test_bad_magic_and_truncation() -> None:
    raw = pack(MAGIC, {"a": 1}, b"0123")
    assert refusal(b"PK\x03\x04" + raw) == "k.bin is not a backmark test key (bad magic bytes)"
    assert "bad magic" in refusal(raw[:5])
    assert refusal(MAGIC + bytes(35)) == f"test key k.bin is truncated ({len(MAGIC) + 35} bytes)"
    assert "truncated" in refusal(MAGIC + bytes(36 + 3), min_payload=4)
    assert unpack(sealed(b"{}", b"0123"), MAGIC, "k.bin", "test key", min_payload=4) == ({}, b"0123")


def test_any_changed_byte_is_refused() -> None:
    raw = pack(MAGIC, {"a": 1}, b"0123")
    for pos in range(len(MAGIC), len(raw)):
        damaged = bytearray(raw)
        damaged[pos] ^= 0x01
        assert refusal(bytes(damaged)) == "test key k.bin is damaged: its checksum does not match", pos
    assert "checksum" in refusal(raw[:-1])
    assert "checksum" in refusal(raw + b"\0")


def test_locate_names_the_damage_with_the_header_it_could_read() -> None:
    raw = pack(MAGIC, {"a": 1}, b"0123")
    seen: list[tuple[dict[str, Any] | None, int]] = []

    def locate(header: dict[str, Any] | None, payload_start: int) -> str:
        seen.append((header, payload_start))
        return "located"

    payload_start = len(MAGIC) + 4 + len(b'{"a": 1}')
    assert refusal(raw[:-1] + bytes([raw[-1] ^ 1]), locate=locate) == "located"
    assert refusal(raw[:payload_start] + b"1123" + raw[-32:], locate=locate) == "located"
    start = len(MAGIC) + 4
    assert refusal(raw[:start] + b"[" + raw[start + 1 :], locate=locate) == "located"
    assert refusal(raw[:-3], locate=locate) == "located"  # cut in its payload: the header is still read
    assert seen == [({"a": 1}, payload_start)] * 2 + [(None, payload_start), ({"a": 1}, payload_start)]
    assert unpack(raw, MAGIC, "k.bin", "test key", locate=locate) == ({"a": 1}, b"0123")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"[1]", "not a JSON object"),
        (b"1", "not a JSON object"),
        (b"{", "Expecting property name enclosed in double quotes"),
        (b'{"a": 1} x', "Extra data"),
        (b'{"a": "\xff"}', "can't decode byte 0xff"),
        (b"[" * 100_000, "nested too deeply to be a test key"),
        (b'{"a": ' + b"[" * 100_000, "nested too deeply to be a test key"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "integer string conversion"),
    ],
)
def test_a_header_that_is_not_a_json_object_is_refused(header: bytes, reason: str) -> None:
    message = refusal(sealed(header))
    assert message.startswith("test key k.bin has a valid checksum but an unreadable header: ")
    assert reason in message


def test_a_header_length_past_the_end_is_refused() -> None:
    raw = pack(MAGIC, {"a": 1}, b"0123")
    for extra in (1, 4, 5, 40, 2**32 - 1 - len(b'{"a": 1}')):
        body = MAGIC + struct.pack(">I", len(b'{"a": 1}') + extra) + raw[len(MAGIC) + 4 : -32]
        assert "unreadable header" in refusal(body + hashlib.sha256(body).digest())
