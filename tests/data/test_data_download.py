"""Checked downloads, against a local http.server on 127.0.0.1 or file:// URLs only."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backmark.data import load_dataset
from backmark.data.download import download, payload_sha256
from backmark.data.idx import IDX_FILES
from backmark.data.mnist import IDX_SOURCES, IdxSource
from backmark.errors import BackmarkError

MakeDir = Callable[..., dict[str, np.ndarray]]


class Server:
    """A static file server on 127.0.0.1 that records the paths requested."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        handler = partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def served(tmp_path: Path, idx_dir_maker: MakeDir) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server with small gzipped IDX files, and the SHA-256s of their decompressed payloads."""
    root = tmp_path / "www"
    idx_dir_maker(root, gz=True)
    checksums = {base: payload_sha256(root / f"{base}.gz") for base in IDX_FILES}
    server = Server(root)
    try:
        yield server, checksums
    finally:
        server.close()


def _use_source(monkeypatch: pytest.MonkeyPatch, server: Server, checksums: dict[str, str]) -> None:
    source = IdxSource(server.url, checksums, IDX_SOURCES["mnist"].classes)
    monkeypatch.setitem(IDX_SOURCES, "mnist", source)


def test_download_then_cache(
    isolated_env: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    served: tuple[Server, dict[str, str]],
) -> None:
    server, checksums = served
    _use_source(monkeypatch, server, checksums)
    ds = load_dataset("mnist", progress=True)
    assert ds.train_x.shape == (20, 1, 28, 28)
    assert sorted(server.requests) == sorted(f"/{base}.gz" for base in IDX_FILES)
    cache = isolated_env["cache"] / "backmark" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{b}.gz" for b in IDX_FILES)

    again = load_dataset("mnist")
    assert len(server.requests) == 4  # served from the cache, the server is not asked again
    assert again.train_x.equal(ds.train_x)


def test_wrong_checksum_leaves_nothing(
    isolated_env: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    served: tuple[Server, dict[str, str]],
) -> None:
    server, checksums = served
    bad = {**checksums, IDX_FILES[0]: "0" * 64}
    _use_source(monkeypatch, server, bad)
    with pytest.raises(BackmarkError, match=r"checksum mismatch for http://127\.0\.0\.1.*train-im"):
        load_dataset("mnist")
    cache = isolated_env["cache"] / "backmark" / "mnist"
    leftovers = [p.name for p in cache.iterdir()] if cache.exists() else []
    assert f"{IDX_FILES[0]}.gz" not in leftovers
    assert not [name for name in leftovers if name.startswith(".")]  # no temporary file


def test_http_404_is_one_line_error(
    tmp_path: Path, served: tuple[Server, dict[str, str]], isolated_env: dict[str, Path]
) -> None:
    server, _ = served
    dest = tmp_path / "out" / "x.gz"
    with pytest.raises(BackmarkError, match="HTTP 404") as info:
        download(server.url + "missing.gz", dest, sha256="0" * 64)
    assert "\n" not in str(info.value)
    assert list(dest.parent.iterdir()) == []


def test_a_destination_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload")
    (tmp_path / "cache").write_text("not a folder")
    dest = tmp_path / "cache" / "mnist" / "x.bin"
    with pytest.raises(BackmarkError, match=r"cache is a file, not a folder; choose another path") as info:
        download(source.as_uri(), dest, sha256=hashlib.sha256(b"payload").hexdigest())
    assert str(info.value).startswith(f"cannot write {dest}:") and "File exists" not in str(info.value)


def test_unreachable_server(tmp_path: Path, isolated_env: dict[str, Path]) -> None:
    with pytest.raises(BackmarkError, match=r"download of http://127\.0\.0\.1:9/x failed"):
        download("http://127.0.0.1:9/x", tmp_path / "x", sha256="0" * 64, timeout=2)


def test_file_url_plain_and_gz(tmp_path: Path) -> None:
    payload = b"idx payload bytes"
    plain = tmp_path / "src.bin"
    plain.write_bytes(payload)
    packed = tmp_path / "src.bin.gz"
    packed.write_bytes(gzip.compress(payload))
    digest = hashlib.sha256(payload).hexdigest()

    got = download(plain.as_uri(), tmp_path / "dl" / "a.bin", sha256=digest)
    assert got.read_bytes() == payload
    # The checksum of a .gz destination is that of its decompressed payload.
    got_gz = download(packed.as_uri(), tmp_path / "dl" / "a.bin.gz", sha256=digest)
    assert gzip.decompress(got_gz.read_bytes()) == payload


def test_fashion_mnist_downloads_when_nowhere_found(
    isolated_env: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    served: tuple[Server, dict[str, str]],
) -> None:
    server, checksums = served
    fashion = IDX_SOURCES["fashion-mnist"]
    source = IdxSource(server.url, checksums, fashion.classes, system_dirs=())
    monkeypatch.setitem(IDX_SOURCES, "fashion-mnist", source)
    ds = load_dataset("fashion-mnist")
    assert ds.classes == fashion.classes and len(server.requests) == 4
    assert (isolated_env["cache"] / "backmark" / "fashion-mnist" / f"{IDX_FILES[1]}.gz").is_file()
