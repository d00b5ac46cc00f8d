"""Both HTTP clients against servers that trickle or never stop: one deadline over the whole exchange.

A server that sends its headers a byte at a time never trips httpx's per-read timeout; these tests
hold the verify client and the registry client to their deadline regardless (issue 21, item 7).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from backmark.errors import BackmarkError
from backmark.infra.asgi import start_server
from backmark.ledger.client import RegistryClient
from backmark.targets.client import ClientConfig, HttpClient


@pytest.fixture
def trickler() -> Iterator[str]:
    """A raw server that answers every request with headers trickled one byte every 0.1 s, for ever."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 100_000:
                    if stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_the_verify_client_ends_at_its_deadline_however_slow_the_headers(trickler: str) -> None:
    config = ClientConfig(timeout=30, attempts=5, backoff=0.05, deadline=1.5)
    start = time.monotonic()
    with HttpClient(config, what="v2 server") as http, pytest.raises(BackmarkError, match="deadline"):
        http.request("GET", trickler + "/v2/models/m")
    assert time.monotonic() - start < 3.5


def test_the_registry_client_ends_at_its_deadline_however_slow_the_headers(trickler: str) -> None:
    start = time.monotonic()
    with RegistryClient(trickler, timeout=30, deadline=1.5) as client, pytest.raises(BackmarkError):
        client.head()
    assert time.monotonic() - start < 3.5


async def _endless(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        block = b"[" + b"0," * 2**19
        while True:
            yield block
            await asyncio.sleep(0)  # lets the server notice the client has gone

    return StreamingResponse(chunks(), media_type="application/json")


@pytest.fixture
def endless() -> Iterator[str]:
    running = start_server(Starlette(routes=[Route("/{path:path}", _endless)]))
    try:
        yield running.url
    finally:
        running.stop()


def test_an_endless_answer_is_cut_at_the_size_limit(endless: str) -> None:
    start = time.monotonic()
    with RegistryClient(endless, deadline=30) as client, pytest.raises(BackmarkError, match="larger than"):
        client.head()
    config = ClientConfig(timeout=30, attempts=1, max_answer_bytes=4 * 2**20)
    with HttpClient(config, what="v2 server") as http, pytest.raises(BackmarkError, match="larger than"):
        http.request("GET", endless + "/v2/models/m")
    assert time.monotonic() - start < 15


def test_the_commands_end_at_their_deadline_with_exit_2(
    trickler: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's reproduction: `verify --deadline 20` was still running at 150 s against a server that
    trickles its headers; here `verify` and `registry lookup` end within their 2 s deadline, exit 2."""
    from backmark.cli.main import main
    from backmark.keys import generate_key, save_key_pair

    key = tmp_path / "key"
    save_key_pair(generate_key(num_classes=10, input_shape=(1, 28, 28), size=10, seed=b"\x02" * 32), key)
    for argv in (
        ["verify", "--key", str(key), "--target", trickler + "/v2/models/m", "--protocol", "v2"],
        ["registry", "lookup", "--registry", trickler, "--vk-digest", "a" * 64],
    ):
        start = time.monotonic()
        code = main([*argv, "--deadline", "2"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert time.monotonic() - start < 4.5
