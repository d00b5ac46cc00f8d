"""Run an ASGI app with uvicorn, guarded against slow, idle and too many connections.

The socket is bound here, before uvicorn starts, so port 0 asks the OS for a free port and the caller
learns which one it got: tests and benchmarks never race for a fixed port. ``tls=(certfile, keyfile)``
serves HTTPS with that PEM certificate and key. Every server runs uvicorn's h11 protocol under the
guard of :mod:`backmark.infra.guard` (header and body deadlines, a bound on connections).
:func:`read_body` reads a request's body under a size limit, refusing by its Content-Length first.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from backmark.errors import BackmarkError
from backmark.infra.guard import (
    ACCEPT_BATCH,
    ACCEPT_BATCHES,
    FD_RESERVE,
    LISTEN_BACKLOG,
    Guard,
    GuardLimits,
    fd_limit,
    guarded_protocol,
)

__all__ = [
    "BodyTooLarge",
    "ClientGone",
    "Guard",
    "GuardLimits",
    "RunningServer",
    "bind",
    "read_body",
    "run_server",
    "serving",
    "start_server",
    "url_of",
]

STARTUP_TIMEOUT = 20.0  # seconds a background server may take to accept connections
KEEP_ALIVE = 5.0  # seconds a connection may wait between requests


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port); a bad address is a BackmarkError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise BackmarkError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise BackmarkError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


TLS = tuple[str, str]  # (certificate PEM file, private key PEM file)


def url_of(sock: socket.socket, tls: TLS | None = None) -> str:
    """``http(s)://HOST:PORT`` for a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _server(app: Any, tls: TLS | None, limits: GuardLimits) -> tuple[uvicorn.Server, Guard]:
    cap = max(1, min(limits.max_connections, fd_limit() - FD_RESERVE - ACCEPT_BATCH * ACCEPT_BATCHES))
    guard = Guard(limits=limits, max_connections=cap)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(guard),
        log_level="warning",
        access_log=False,
        lifespan="auto",  # an app's shutdown (the model server's parsing processes) runs on exit
        timeout_keep_alive=int(KEEP_ALIVE),
        backlog=ACCEPT_BATCH,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    if tls:
        try:
            config.load()  # reads the certificate now, so a bad file is a one-line error, not a traceback
        except (OSError, ValueError) as exc:
            raise BackmarkError(f"cannot use TLS certificate {tls[0]} with key {tls[1]}: {exc}") from None
    return _Server(config), guard


class _Server(uvicorn.Server):
    """uvicorn's server; asyncio's listen() takes the accept batch as the backlog, so the kernel's
    queue is set back to its full length once listening."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for sock in sockets or ():
            with contextlib.suppress(OSError):
                sock.listen(LISTEN_BACKLOG)


def run_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tls: TLS | None = None,
    limits: GuardLimits | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``app`` until interrupted (Ctrl-C or SIGTERM end it gracefully); ``on_ready(url)`` once bound."""
    server, _ = _server(app, tls, limits or GuardLimits())
    sock = bind(host, port)
    if on_ready is not None:
        on_ready(url_of(sock, tls))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@dataclass(frozen=True)
class RunningServer:
    """A server on a background thread: ``url`` is ``http://HOST:PORT``; :meth:`stop` ends it."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    guard: Guard

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(min(timeout, 1.0))
        if self.thread.is_alive():  # a connection its client never closed: stop waiting for it
            self.server.force_exit = True
            self.thread.join(timeout)


def start_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: TLS | None = None,
    limits: GuardLimits | None = None,
) -> RunningServer:
    """Start ``app`` on a daemon thread and return once it accepts connections."""
    server, guard = _server(app, tls, limits or GuardLimits())
    sock = bind(host, port)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="backmark-serve"
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise BackmarkError(f"the server on {url_of(sock, tls)} did not start")
        time.sleep(0.01)
    return RunningServer(url=url_of(sock, tls), server=server, thread=thread, guard=guard)


@contextlib.contextmanager
def serving(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: TLS | None = None,
    limits: GuardLimits | None = None,
) -> Iterator[str]:
    """``with serving(app) as url: ...``: a background server for the duration of the block."""
    running = start_server(app, host=host, port=port, tls=tls, limits=limits)
    try:
        yield running.url
    finally:
        running.stop()


class BodyTooLarge(Exception):
    """The request's body is over the limit (by its Content-Length, or once that much has arrived)."""


class ClientGone(Exception):
    """The client disconnected (or missed the body deadline) before its body arrived in full."""


async def read_body(request: Any, limit: int) -> bytes:
    """The body of a Starlette ``request``, refused by its Content-Length before a byte is read.

    A body without a length (chunked) is read until it passes ``limit``. Raises :class:`BodyTooLarge`
    or :class:`ClientGone`, which each app maps onto its own answer.
    """
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    # h11 has already refused a Content-Length that is not digits
    if declared is not None and (len(declared) > 18 or int(declared) > limit):
        raise BodyTooLarge
    size, parts = 0, []
    try:
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise BodyTooLarge
            parts.append(part)
    except ClientDisconnect:
        raise ClientGone from None
    return b"".join(parts)
