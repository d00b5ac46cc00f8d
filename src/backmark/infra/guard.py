"""The guard on uvicorn's connections: deadlines for a request's headers and body, a bound on connections.

uvicorn times out a kept-alive connection between requests but not one that never finishes a request:
a connection that sends nothing, or its headers a byte at a time (slowloris), stays open for ever, and
enough of them exhaust the process's file descriptors (then every accept fails and logs a traceback).
:func:`guarded_protocol` closes that gap in uvicorn's own protocol object, with the limits of
:class:`GuardLimits` and the shared state of :class:`Guard`:

- a **header deadline**: the request line and headers must arrive within ``header_timeout`` seconds of
  the connection (or of the first byte of a kept-alive connection's next request);
- a **body deadline**: the body must arrive within ``body_timeout`` seconds of the headers, and a client
  that stops reading its answer (the server's write buffer full) must resume within as long;
- a **connection bound**: at most ``max_connections`` open at once, clipped below the open-file limit
  (raised to its hard maximum) by a reserve for files and for the connections asyncio accepts before
  they reach the guard, so that accepting never runs out of descriptors. A new connection over the
  bound first evicts the oldest one that has not yet sent its request's headers (idle or slow: nothing
  is lost), and is refused only when every open connection is busy with a request. Refusals log one
  line when they start, then at most one a minute with the count, never one per connection.

A request that misses a deadline is closed without an answer (there is nothing to answer yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from backmark.errors import BackmarkError

FD_RESERVE = 64  # descriptors kept for files, the database, the log: never handed to connections
# asyncio accepts up to this many connections at each wake-up, and several batches can be accepted
# before the first reaches the guard: the bound leaves room for ACCEPT_BATCHES of them, so accept()
# never runs out of descriptors (asyncio would log a traceback each time, and stop accepting for 1 s).
ACCEPT_BATCH = 32
ACCEPT_BATCHES = 4
LISTEN_BACKLOG = 1024  # the kernel's queue of connections not yet accepted (asyncio sets the batch)
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


def guarded_protocol(guard: Guard) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the header and body deadlines and the connection bound of ``guard``."""

    class Guarded(H11Protocol):
        _refused = False
        _timer: asyncio.TimerHandle | None = None
        _write_timer: asyncio.TimerHandle | None = None  # runs while the client does not read its answer
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
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
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

        def pause_writing(self) -> None:
            # the client stopped reading its answer: it has body_timeout seconds to start again
            super().pause_writing()
            if self._write_timer is None:
                self._write_timer = self.loop.call_later(guard.limits.body_timeout, self._expire)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._disarm()
            guard.open -= 1
            super().connection_lost(exc)

    return Guarded
