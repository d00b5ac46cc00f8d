"""Run an ASGI app with uvicorn: in the foreground (``backmark serve``) or on a background thread (tests).

The socket is bound here, before uvicorn starts, so port 0 asks the OS for a free port and the caller
learns which one it got: tests and benchmarks never race for a fixed port. ``tls=(certfile, keyfile)``
serves HTTPS with that PEM certificate and key.
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

STARTUP_TIMEOUT = 20.0  # seconds a background server may take to accept connections


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
        sock.listen(128)
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


def _server(app: Any, tls: TLS | None) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    if tls:
        try:
            config.load()  # reads the certificate now, so a bad file is a one-line error, not a traceback
        except (OSError, ValueError) as exc:
            raise BackmarkError(f"cannot use TLS certificate {tls[0]} with key {tls[1]}: {exc}") from None
    return uvicorn.Server(config)


def run_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tls: TLS | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``app`` until interrupted (Ctrl-C or SIGTERM end it gracefully); ``on_ready(url)`` once bound."""
    server = _server(app, tls)
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

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(min(timeout, 1.0))
        if self.thread.is_alive():  # a connection its client never closed: stop waiting for it
            self.server.force_exit = True
            self.thread.join(timeout)


def start_server(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, tls: TLS | None = None
) -> RunningServer:
    """Start ``app`` on a daemon thread and return once it accepts connections."""
    server = _server(app, tls)
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
    return RunningServer(url=url_of(sock, tls), server=server, thread=thread)


@contextlib.contextmanager
def serving(app: Any, *, host: str = "127.0.0.1", port: int = 0, tls: TLS | None = None) -> Iterator[str]:
    """``with serving(app) as url: ...``: a background server for the duration of the block."""
    running = start_server(app, host=host, port=port, tls=tls)
    try:
        yield running.url
    finally:
        running.stop()
