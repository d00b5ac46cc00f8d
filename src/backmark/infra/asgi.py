"""Run an ASGI app with uvicorn, guarded against slow, idle and too many connections.

The socket is bound here, before uvicorn starts, so port 0 asks the OS for a free port and the caller
learns which one it got: tests and benchmarks never race for a fixed port. ``tls=(certfile, keyfile)``
serves HTTPS with that PEM certificate and key.

uvicorn times out a kept-alive connection between requests but not one that never finishes a request:
a connection that sends nothing, or its headers a byte at a time (slowloris), stays open for ever, and
enough of them exhaust the process's file descriptors (then every accept fails and logs a traceback).
:class:`Guard` (:class:`GuardLimits` says how much) closes that gap in uvicorn's own protocol object:

- a **header deadline**: the request line and headers must arrive within ``header_timeout`` seconds of
  the connection (or of the first byte of a kept-alive connection's next request);
- a **body deadline**: the body must arrive within ``body_timeout`` seconds of the headers;
- a **connection bound**: at most ``max_connections`` open at once, clipped below the open-file limit
  (raised to its hard maximum) by a reserve for files and one accept batch, so that accepting never runs
  out of descriptors. A new connection over the bound first evicts the oldest one
  that has not yet sent its request's headers (idle or slow: nothing is lost), and is refused only when
  every open connection is busy with a request. Refusals log one line when they start, then at most
  one a minute with the count, never one per connection.

A request that misses a deadline is closed without an answer (there is nothing to answer yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from backmark.errors import BackmarkError

STARTUP_TIMEOUT = 20.0  # seconds a background server may take to accept connections
KEEP_ALIVE = 5.0  # seconds a connection may wait between requests
_FD_RESERVE = 64  # descriptors kept for files, the database, the log: never handed to connections
# asyncio accepts up to this many connections at each wake-up, and several batches can be accepted
# before the first reaches the guard: the bound leaves room for _ACCEPT_BATCHES of them, so accept()
# never runs out of descriptors (asyncio would log a traceback each time, and stop accepting for 1 s).
_ACCEPT_BATCH = 32
_ACCEPT_BATCHES = 4
_LISTEN_BACKLOG = 1024  # the kernel's queue of connections not yet accepted (asyncio sets the batch)
LOG = logging.getLogger("uvicorn.error")


@dataclass(frozen=True)
class GuardLimits:
    """How long a request may take to arrive, and how many connections may be open at once."""

    header_timeout: float = 10.0  # seconds from the connection (or next request's first byte) to its headers
    body_timeout: float = 60.0  # seconds from the headers to the last byte of the body
    max_connections: int = 2048  # open connections at once (clipped below the open-file limit)

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout"):
            value = getattr(self, name)
            if not (0 < value <= 3600):
                raise BackmarkError(f"{{{name}}} must be seconds in (0, 3600], got {value}", params=[name])
        if not 1 <= self.max_connections <= 2**20:
            raise BackmarkError(
                f"{{max_connections}} must be 1 to 1048576, got {self.max_connections}",
                params=["max_connections"],
            )


@dataclass
class Guard:
    """The shared state of one server's connections: who is waiting for headers, what was refused."""

    limits: GuardLimits
    max_connections: int
    waiting: dict[Any, None] = field(default_factory=dict)  # connections without headers, oldest first
    open: int = 0
    refused: int = 0
    evicted: int = 0
    timed_out: int = 0
    _logged_at: float = -1e9
    _logged_refused: int = 0

    def note_refused(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= 60.0:
            since = self.refused - self._logged_refused
            LOG.warning(
                "connection limit of %d reached: refusing new connections (%d refused since the last "
                "report); raise --max-connections or put a proxy in front",
                self.max_connections,
                since,
            )
            self._logged_at, self._logged_refused = now, self.refused


def fd_limit() -> int:
    """Raise the soft open-file limit to the hard one (at most 1,048,576) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard if hard != resource.RLIM_INFINITY else 2**20, 2**20)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return soft if soft != resource.RLIM_INFINITY else 2**20


def _guarded_protocol(guard: Guard) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the header and body deadlines and the connection bound of ``guard``."""

    class Guarded(H11Protocol):
        _refused = False
        _timer: asyncio.TimerHandle | None = None
        _armed_for: Any = None  # the request cycle that was current when the timer started
        _phase = "headers"

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if guard.open >= guard.max_connections:
                if guard.waiting:  # evict the oldest connection that has not sent its headers
                    oldest = next(iter(guard.waiting))
                    oldest._expire(evicted=True)
                else:
                    self._refused = True
                    guard.note_refused()
                    transport.abort()
                    return
            guard.open += 1
            super().connection_made(transport)
            self._arm("headers")

        def _arm(self, phase: str) -> None:
            self._disarm()
            self._phase = phase
            self._armed_for = self.cycle
            wait = guard.limits.header_timeout if phase == "headers" else guard.limits.body_timeout
            self._timer = self.loop.call_later(wait, self._expire)
            if phase == "headers":
                guard.waiting[self] = None

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            guard.waiting.pop(self, None)

        def _expire(self, evicted: bool = False) -> None:
            self._disarm()
            if evicted:
                guard.evicted += 1
            else:
                guard.timed_out += 1
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm("headers")  # the first byte of a kept-alive connection's next request
            super().data_received(data)
            cycle = self.cycle
            if self._timer is None or cycle is None:
                return
            if self._phase == "headers":
                if cycle is self._armed_for:
                    return  # this request's headers are not complete yet
                if cycle.more_body:
                    self._arm("body")
                else:
                    self._disarm()  # a request without a body has arrived in full
            elif not cycle.more_body:
                self._disarm()  # the body has arrived in full

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._disarm()
            guard.open -= 1
            super().connection_lost(exc)

    return Guarded


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
        sock.listen(_LISTEN_BACKLOG)
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
    cap = max(1, min(limits.max_connections, fd_limit() - _FD_RESERVE - _ACCEPT_BATCH * _ACCEPT_BATCHES))
    guard = Guard(limits=limits, max_connections=cap)
    config = uvicorn.Config(
        app,
        http=_guarded_protocol(guard),
        log_level="warning",
        access_log=False,
        lifespan="auto",  # an app's shutdown (the model server's parsing processes) runs on exit
        timeout_keep_alive=int(KEEP_ALIVE),
        backlog=_ACCEPT_BATCH,
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
                sock.listen(_LISTEN_BACKLOG)


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
