"""One retry loop for the HTTP clients: attempts, backoff, ``Retry-After``, a longest wait, a deadline.

:func:`with_retries` calls ``send(attempt)`` until it gets an answer whose status is not one the
:class:`RetryPolicy` retries, and returns that answer. ``send`` raises :class:`Retry` for a failure worth
another try (a timeout, a dropped connection) and any other exception for one that is final. Between
tries it pauses for the policy's backoff (``backoff``, doubled after each failure, at most
``max_backoff``) or, when the answer carried a ``Retry-After`` (:func:`retry_after`: seconds or an HTTP
date), for the longer of the two. A ``Retry-After`` longer than ``max_wait`` ends the loop at once; so do
the last of ``attempts`` tries and a pause that would not end before the deadline (``left()`` seconds).
Each end is a :class:`GaveUp` that says which, for the client to word in its own terms.

Every pause is bounded (by ``max_wait`` and by the time left) and the loop always ends: after
``attempts`` tries, or, without a bound on attempts, at the deadline (which must then be finite).
Nothing here imports httpx; the clients are ``targets.client`` and ``ledger.client``.
"""

from __future__ import annotations

import email.utils
import itertools
import math
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Literal, Protocol, TypeVar


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (0 once it has passed).

    None when absent or neither form. ``now`` (``time.time()`` seconds) is the clock an HTTP date is
    measured from. A delta too large for a float is infinity, which every caller refuses as too long.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Reply(Protocol):
    """What the loop reads of an answer: its status and its headers (``Retry-After``)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Which answers are retried, how often, and how long to pause between tries. Times in seconds."""

    statuses: Container[int]  # answers retried (each client's own set); every other answer is returned
    attempts: int | None = None  # tries, the first included; None: as many as the deadline allows
    backoff: float = 0.1  # pause after the first failure; doubles after each further one
    max_backoff: float = math.inf  # the doubling stops here
    max_wait: float = math.inf  # the longest pause; a Retry-After asking for more ends the loop

    def pause(self, attempt: int) -> float:
        """The backoff after failed try number ``attempt`` (1 for the first)."""
        return min(self.backoff * 2.0 ** min(attempt - 1, 64), self.max_backoff)


class Retry(Exception):
    """Raised by ``send`` for a failure worth another try; ``failure`` says what went wrong."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


Why = Literal["no time", "attempts", "too long", "deadline"]


class GaveUp(Exception):
    """The loop ended without an answer to return. ``why`` is one of:

    - ``"no time"``: the deadline had passed before try number ``attempt + 1`` could start;
    - ``"attempts"``: all ``attempt`` tries failed;
    - ``"too long"``: the answer asked (``Retry-After``) for a pause of ``asked`` seconds, over ``max_wait``;
    - ``"deadline"``: the next pause would not end before the deadline.

    ``failure`` is the last failure (None when no try was made).
    """

    def __init__(self, why: Why, *, attempt: int, failure: str | None, asked: float | None = None) -> None:
        super().__init__(f"{why} after {attempt} attempt(s): {failure}")
        self.why: Why = why
        self.attempt = attempt
        self.failure = failure
        self.asked = asked


R = TypeVar("R", bound=Reply)


def with_retries(
    send: Callable[[int], R],
    policy: RetryPolicy,
    *,
    left: Callable[[], float],
    describe: Callable[[R], str],
    on_retry: Callable[[int, str, float, float], None] | None = None,
) -> R:
    """The first answer of ``send(attempt)`` whose status ``policy`` does not retry (see the module).

    ``left()`` is the time left before the deadline (infinity without one); ``describe(answer)`` words a
    retried answer as a failure; ``on_retry(attempt, failure, wait, left)`` hears each retry before its
    pause. Raises :class:`GaveUp`, or whatever ``send`` raises other than :class:`Retry`.
    """
    if policy.attempts is None and not math.isfinite(left()):
        raise ValueError("retries unbounded in number need a finite deadline")
    tries: Iterable[int] = itertools.count(1) if policy.attempts is None else range(1, policy.attempts + 1)
    failure: str | None = None
    for attempt in tries:
        if not left() > 0:  # NaN included
            raise GaveUp("no time", attempt=attempt - 1, failure=failure)
        asked: float | None = None
        try:
            answer = send(attempt)
        except Retry as retry:
            failure = retry.failure
        else:
            if answer.status_code not in policy.statuses:
                return answer
            failure = describe(answer)
            asked = retry_after(answer.headers.get("retry-after"))
        if asked is not None and asked > policy.max_wait:
            raise GaveUp("too long", attempt=attempt, failure=failure, asked=asked)
        if attempt == policy.attempts:
            raise GaveUp("attempts", attempt=attempt, failure=failure, asked=asked)
        wait = policy.pause(attempt) if asked is None else max(policy.pause(attempt), asked)
        wait = min(wait, policy.max_wait)
        remaining = left()
        if wait >= remaining:  # the next try could not even start in time
            raise GaveUp("deadline", attempt=attempt, failure=failure, asked=asked)
        if on_retry is not None:
            on_retry(attempt, failure, wait, remaining)
        time.sleep(wait)
    raise AssertionError("unreachable")  # the last try returns or raises
