"""JSON nested deeper than the parser's stack, in every file or option backmark parses: a one-line error.

``json.loads("[" * 100_000)`` raises RecursionError, which is not a ValueError; each reader must still
answer with a BackmarkError (or, for a format sniffer, "not this format"), never a traceback.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from backmark.cli.targets import parse_arch_args
from backmark.errors import BackmarkError
from backmark.infra.json_files import read_json
from backmark.keys import generate_key, load_marking_key
from backmark.keys.files import MK_MAGIC, marking_key_bytes
from backmark.models import ModelInfo, build, load_checkpoint, save_safetensors
from backmark.models.safetensors_io import has_metadata
from backmark.response.key import RK_MAGIC, generate_response_key, load_response_key, response_key_bytes
from backmark.targets.adapter import load_adapter

DEEP = b"[" * 100_000


def _with_header(raw: bytes, magic: bytes, header: bytes) -> bytes:
    """A key file whose JSON header is ``header``, with a checksum that matches (anyone can compute one)."""
    (size,) = struct.unpack(">I", raw[len(magic) : len(magic) + 4])
    body = magic + struct.pack(">I", len(header)) + header + raw[len(magic) + 4 + size : -32]
    return body + hashlib.sha256(body).digest()


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _marking_key(tmp_path: Path) -> Path:
    mk = generate_key(num_classes=10, input_shape=(1, 28, 28), size=4)
    return _file(tmp_path, "mk.bmk", _with_header(marking_key_bytes(mk), MK_MAGIC, DEEP))


def _response_key(tmp_path: Path) -> Path:
    raw = response_key_bytes(generate_response_key(rate=0.1))
    return _file(tmp_path, "r.bmrk", _with_header(raw, RK_MAGIC, DEEP))


def _safetensors(tmp_path: Path) -> Path:
    header = b'{"a":' + DEEP
    return _file(tmp_path, "m.safetensors", struct.pack("<Q", len(header)) + header)


def _safetensors_meta(tmp_path: Path) -> Path:
    """A safetensors model whose tensors match its digest but whose backmark metadata nests too deeply."""
    model = build(ModelInfo("cnn", {}, (1, 28, 28), 10))
    save_safetensors(tmp_path / "ok.safetensors", model, ModelInfo("cnn", {}, (1, 28, 28), 10))
    with safe_open(str(tmp_path / "ok.safetensors"), framework="pt") as f:
        metadata = {**f.metadata(), "meta": DEEP.decode()}
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata=metadata)
    return tmp_path / "m.safetensors"


READERS: dict[str, Callable[[Path], object]] = {
    "safetensors metadata": lambda tmp: load_checkpoint(_safetensors_meta(tmp)),
    "json file": lambda tmp: read_json(_file(tmp, "d.json", DEEP), "receipt"),
    "adapter": lambda tmp: load_adapter(_file(tmp, "a.json", DEEP)),
    "marking key": lambda tmp: load_marking_key(_marking_key(tmp)),
    "response key": lambda tmp: load_response_key(_response_key(tmp)),
    "safetensors model": lambda tmp: load_checkpoint(_safetensors(tmp)),
    "--arch-args": lambda tmp: parse_arch_args(DEEP.decode()),
    "--arch-args, an integer too long": lambda tmp: parse_arch_args('{"width": ' + "1" * 5000 + "}"),
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_deep_nesting_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(BackmarkError) as info:
        READERS[name](tmp_path)
    assert "\n" not in str(info.value)


def test_the_safetensors_sniffer_says_no(tmp_path: Path) -> None:
    assert has_metadata(_safetensors(tmp_path)) is False
