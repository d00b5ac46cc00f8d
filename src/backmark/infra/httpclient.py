"""httpx with one deadline over a whole exchange: connecting, sending, the headers and the body.

httpx's timeouts apply to each socket operation: a server that trickles its answer a byte a second
never trips a 30 s read timeout, headers included, so a request can last for ever. :func:`transport`
builds httpx's own transport with a network backend whose every connect, read and write is clipped
to the time left before the deadline set by :meth:`DeadlineBackend.until` (per thread), after which
it raises httpx's ordinary timeout. :func:`read_capped` reads an answer up to a size limit, so an
answer too large is refused after ``limit`` bytes instead of filling memory. :func:`fetch` is one
request of either client, the two together; ``infra.retry`` retries it.
"""

from __future__ import annotations

import contextlib
import math
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from backmark.errors import BackmarkError


class AnswerTooLarge(Exception):
    """The answer passed the size limit; ``limit`` is it."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


class _Clock(threading.local):
    end: float = math.inf


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, clock: _Clock) -> None:
        self._inner = inner
        self._clock = clock

    def _left(self, timeout: float | None, error: type[Exception]) -> float | None:
        left = self._clock.end - time.monotonic()
        if left <= 0:
            raise error("the deadline of the exchange has passed")
        if math.isinf(left):
            return timeout
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout)
        )
        return _Stream(inner, self._clock)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, each operation clipped to the deadline of the current thread."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner
        self._clock = _Clock()

    @contextlib.contextmanager
    def until(self, end: float) -> Iterator[None]:
        """Within the block, this thread's exchanges end by ``end`` (``time.monotonic()`` seconds)."""
        previous = self._clock.end
        self._clock.end = min(previous, end)
        try:
            yield
        finally:
            self._clock.end = previous

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._clock.end - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the deadline of the exchange has passed")
        clipped = timeout if math.isinf(left) else (left if timeout is None else min(timeout, left))
        inner = self._inner.connect_tcp(host, port, clipped, local_address, socket_options)
        return _Stream(inner, self._clock)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options), self._clock)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def transport(*, verify: ssl.SSLContext | bool = True) -> tuple[httpx.HTTPTransport, DeadlineBackend]:
    """httpx's transport with a :class:`DeadlineBackend` (and that backend, to set deadlines with)."""
    made = httpx.HTTPTransport(verify=verify)
    pool = made._pool  # httpcore's ConnectionPool; its backend is the one seam httpx leaves for this
    backend = DeadlineBackend(pool._network_backend)
    pool._network_backend = backend
    return made, backend


def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed ``response``, refused with :class:`AnswerTooLarge` past ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AnswerTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    for part in response.iter_bytes():
        size += len(part)
        if size > limit:
            raise AnswerTooLarge(limit)
        parts.append(part)
    return b"".join(parts)


@dataclass(frozen=True)
class Answer:
    """A whole answer: its status, reason phrase and headers, and its body read within the size limit."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes


def fetch(
    client: httpx.Client,
    backend: DeadlineBackend,
    method: str,
    url: str,
    *,
    end: float,
    timeout: float,
    limit: int,
    what: str,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> Answer:
    """One request through ``client`` (whose transport's backend is ``backend``), the whole exchange over
    by ``end`` (``time.monotonic()`` seconds) and each socket operation within ``timeout``.

    An answer over ``limit`` bytes is a BackmarkError naming ``what`` (the server); httpx's own errors
    pass through, for the caller to retry or not.
    """
    with (
        backend.until(end),
        client.stream(method, url, content=content, headers=headers, params=params, timeout=timeout) as got,
    ):
        try:
            body = read_capped(got, limit)
        except AnswerTooLarge:
            raise BackmarkError(f"{what} sent an answer larger than {limit} bytes") from None
        return Answer(got.status_code, got.reason_phrase, got.headers, body)
