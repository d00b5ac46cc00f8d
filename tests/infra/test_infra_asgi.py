"""The guarded uvicorn runner against real sockets: slowloris, idle floods, slow bodies, the bound's log."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backmark.infra.asgi import BodyTooLarge, ClientGone, GuardLimits, RunningServer, read_body, start_server


async def _echo(request: Request) -> JSONResponse:
    body = await read_body(request, 1000)
    return JSONResponse({"size": len(body)})


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _refuse(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"error": type(exc).__name__}, status_code=413 if isinstance(exc, BodyTooLarge) else 400
    )


SRC = str(Path(__file__).resolve().parents[2] / "src")
APP = Starlette(
    routes=[Route("/ok", _ok), Route("/echo", _echo, methods=["POST"])],
    exception_handlers={BodyTooLarge: _refuse, ClientGone: _refuse},
)


@pytest.fixture
def server() -> Iterator[RunningServer]:
    running = start_server(APP, limits=GuardLimits(header_timeout=1.0, body_timeout=1.5, max_connections=20))
    try:
        yield running
    finally:
        running.stop()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (None if still open after ``seconds``), sending ``trickle``
    one byte every 0.2 s meanwhile."""
    start = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(1024) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - start
        if sent < len(trickle):
            try:
                sock.send(trickle[sent : sent + 1])
            except OSError:
                return time.monotonic() - start
            sent += 1
    return None


def test_an_idle_connection_is_closed_after_the_header_deadline(server: RunningServer) -> None:
    with _connect(server.url) as sock:
        took = _closed_within(sock, 4.0)
    assert took is not None and 0.8 < took < 2.5


def test_slowloris_headers_are_cut_at_the_deadline_however_steady(server: RunningServer) -> None:
    """One byte every 0.2 s would keep uvicorn's per-read timers happy for ever; the deadline is total."""
    request = b"GET /ok HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with _connect(server.url) as sock:
        took = _closed_within(sock, 4.0, trickle=request)
    assert took is not None and took < 2.5


def test_a_slow_body_is_cut_at_the_body_deadline(server: RunningServer) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\nContent-Type: application/json\r\n\r\n"
    with _connect(server.url) as sock:
        sock.sendall(head)
        took = _closed_within(sock, 5.0, trickle=b"1" * 500)
    assert took is not None and took < 3.5
    assert httpx.get(server.url + "/ok", timeout=5).status_code == 200


def test_a_kept_alive_connection_gets_a_fresh_deadline_for_each_request(server: RunningServer) -> None:
    with httpx.Client(timeout=5) as client:
        for _ in range(3):
            assert client.get(server.url + "/ok").json() == {"ok": True}
            time.sleep(0.7)  # under the keep-alive time; the next request's headers arrive at once


def test_idle_connections_are_evicted_for_real_requests(server: RunningServer) -> None:
    """Past the bound, a new connection closes the oldest one still waiting for its headers."""
    idle = [_connect(server.url) for _ in range(40)]  # twice the bound of 20
    try:
        time.sleep(0.2)
        for _ in range(5):
            assert httpx.get(server.url + "/ok", timeout=5).status_code == 200
        assert server.guard.evicted >= 20
        settle = time.monotonic() + 3  # an evicted connection is counted until its close completes
        while server.guard.open > 20 and time.monotonic() < settle:
            time.sleep(0.05)
        assert server.guard.open <= 20
    finally:
        for sock in idle:
            sock.close()


def test_busy_connections_over_the_bound_are_refused_with_one_log_line(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Connections that are all mid-body cannot be evicted: new ones are refused, and that is logged once."""
    running = start_server(APP, limits=GuardLimits(header_timeout=5.0, body_timeout=5.0, max_connections=5))
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n"
    busy = []
    try:
        for _ in range(5):
            sock = _connect(running.url)
            sock.sendall(head)
            busy.append(sock)
        time.sleep(0.3)
        for _ in range(30):
            with _connect(running.url) as extra:
                assert _closed_within(extra, 2.0) is not None
        assert running.guard.refused == 30
        assert capfd.readouterr().err.count("connection limit of 5 reached") == 1
    finally:
        for sock in busy:
            sock.close()
        running.stop()


def test_a_body_over_the_limit_is_refused_by_its_length_before_it_is_sent(server: RunningServer) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
    with _connect(server.url) as sock:
        sock.sendall(head)  # and not one byte of the body
        sock.settimeout(3)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_more_idle_connections_than_open_files_neither_block_nor_spam_the_log(tmp_path: Path) -> None:
    """Issue 21: with 1,024 open files, 1,100 idle connections timed out a normal request and wrote
    106,144 tracebacks. Here a registry process may open 256 files and gets 400 idle connections: the
    oldest idle ones are evicted, a normal request is answered, and the log stays empty."""
    from backmark.identity import new_identity, save_identity

    save_identity(new_identity(), tmp_path / "id")
    argv = [sys.executable, "-m", "backmark", "registry", "serve", "--db", f"sqlite:///{tmp_path / 'r.db'}"]
    argv += ["--identity", str(tmp_path / "id"), "--port", "0", "-q"]
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)),
    )
    idle: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[3]
        for _ in range(400):
            idle.append(_connect(url))
        time.sleep(0.5)
        start = time.monotonic()
        assert httpx.get(url + "/v1/head", timeout=10).status_code == 200
        assert time.monotonic() - start < 3
    finally:
        for sock in idle:
            sock.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err and "out of system resource" not in err, err[-2000:]
    assert err.count("\n") <= 1, err[-2000:]


async def _big(request: Request) -> JSONResponse:
    return JSONResponse({"data": "x" * 30_000_000})


def test_a_client_that_stops_reading_its_answer_is_cut_at_the_body_deadline(
    capfd: pytest.CaptureFixture[str],
) -> None:
    running = start_server(
        Starlette(routes=[Route("/big", _big)]),
        limits=GuardLimits(header_timeout=5.0, body_timeout=1.0, max_connections=20),
    )
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = running.url.removeprefix("http://").split(":")
        sock.connect((host, int(port)))
        with sock:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(4.0)  # reads nothing: the server's buffers fill and its deadline runs
            assert running.guard.timed_out == 1
        assert httpx.get(running.url + "/big", timeout=30).status_code == 200  # a reader is served
    finally:
        running.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]
