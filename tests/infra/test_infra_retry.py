"""The one retry loop and Retry-After parser (backmark.infra.retry) that both HTTP clients use.

The loop is run against a scripted ``send`` on a fake clock (``time.sleep`` advances it), so every wait
is checked exactly and no test sleeps; the last test runs both clients against a real local server that
asks for a pause as an HTTP date.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backmark.infra import retry as retry_module
from backmark.infra.retry import GaveUp, Retry, RetryPolicy, retry_after, with_retries

NOW = 1_700_000_000.0  # a fixed time.time() for HTTP dates


def _date(seconds_from_now: float) -> str:
    return email.utils.formatdate(NOW + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (_date(30), 30.0),  # an HTTP date: seconds from now
        (_date(-3600), 0.0),  # a date in the past: no wait
        (email.utils.formatdate(NOW + 5).replace("-0000", "GMT"), 5.0),
        (email.utils.formatdate(NOW + 5), 5.0),  # "-0000" (no zone) is GMT too
        ("9" * 400, math.inf),  # too large for a float: infinite, which every caller refuses
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str, seconds: float) -> None:
    assert retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", "1.5", "+3", "\u0661\u0662", "Mon, 99 Foo 2024", "0x10"]
)
def test_retry_after_refuses_garbage(value: str | None) -> None:
    assert retry_after(value, now=NOW) is None


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Clock:
    """``time.monotonic`` for the loop's ``left``; the loop's sleeps advance it and are recorded."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        assert 0 <= seconds < math.inf
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(retry_module.time, "sleep", fake.sleep)
    monkeypatch.setattr(retry_module.time, "time", lambda: NOW + fake.now)
    return fake


def _run(
    script: list[Reply | Exception],
    policy: RetryPolicy,
    clock: Clock,
    *,
    deadline: float = math.inf,
    took: float = 0.0,
) -> tuple[Reply, list[int], list[str]]:
    """Run the loop over ``script`` (its last step repeats); each try takes ``took`` seconds."""
    calls: list[int] = []
    heard: list[str] = []

    def send(attempt: int) -> Reply:
        calls.append(attempt)
        clock.now += took
        step = script[min(len(calls), len(script)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    answer = with_retries(
        send,
        policy,
        left=lambda: deadline - clock.now,
        describe=lambda r: f"answered {r.status_code}",
        on_retry=lambda n, failure, wait, left: heard.append(f"{n}: {failure}; {wait:g} s, {left:g} left"),
    )
    return answer, calls, heard


LEDGER = RetryPolicy(statuses=frozenset({429, 502, 503, 504}), backoff=0.1, max_backoff=2.0)
TARGET = RetryPolicy(statuses=frozenset({429, *range(500, 600)}), attempts=5, backoff=0.5, max_wait=60.0)


def test_retried_statuses_and_failures_with_doubling_backoff(clock: Clock) -> None:
    script: list[Reply | Exception] = [Reply(503), Retry("dropped"), Reply(500), Reply(200)]
    answer, calls, heard = _run(script, TARGET, clock)
    assert answer.status_code == 200 and calls == [1, 2, 3, 4]
    assert clock.slept == [0.5, 1.0, 2.0]
    assert heard == [
        "1: answered 503; 0.5 s, inf left",
        "2: dropped; 1 s, inf left",
        "3: answered 500; 2 s, inf left",
    ]


def test_the_backoff_stops_doubling_at_its_cap(clock: Clock) -> None:
    _, calls, _ = _run([Reply(503)] * 7 + [Reply(200)], LEDGER, clock, deadline=100.0)
    assert len(calls) == 8 and clock.slept == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])


def test_a_status_outside_the_set_is_returned_at_once(clock: Clock) -> None:
    """The ledger's set has no plain 500 (its unexpected error): returned to the caller, not retried."""
    answer, calls, _ = _run([Reply(500), Reply(200)], LEDGER, clock, deadline=60.0)
    assert answer.status_code == 500 and calls == [1] and clock.slept == []
    answer, calls, _ = _run([Reply(404)], TARGET, clock)
    assert answer.status_code == 404 and calls == [1]


@pytest.mark.parametrize(
    ("header", "wait"),
    [("3", 3.0), (_date(4), 4.0), (_date(-60), 0.5), ("0", 0.5), ("soon", 0.5)],
)
def test_retry_after_in_both_forms_is_the_pause_when_longer_than_the_backoff(
    clock: Clock, header: str, wait: float
) -> None:
    _, calls, _ = _run([Reply(429, {"retry-after": header}), Reply(200)], TARGET, clock)
    assert calls == [1, 2] and clock.slept == pytest.approx([wait])


def test_retry_after_counts_on_any_retried_status(clock: Clock) -> None:
    _, _, _ = _run([Reply(503, {"retry-after": "1"}), Reply(200)], LEDGER, clock, deadline=60.0)
    assert clock.slept == [1.0]


def test_a_retry_after_over_the_longest_wait_ends_at_once(clock: Clock) -> None:
    with pytest.raises(GaveUp) as info:
        _run([Reply(429, {"retry-after": "3600"})], TARGET, clock)
    stop = info.value
    assert (stop.why, stop.attempt, stop.failure, stop.asked) == ("too long", 1, "answered 429", 3600.0)
    assert clock.slept == []


def test_the_backoff_is_capped_by_the_longest_wait(clock: Clock) -> None:
    policy = RetryPolicy(statuses={503}, attempts=4, backoff=10.0, max_wait=15.0)
    _run([Reply(503)] * 3 + [Reply(200)], policy, clock)
    assert clock.slept == [10.0, 15.0, 15.0]


def test_the_last_attempt_gives_up(clock: Clock) -> None:
    with pytest.raises(GaveUp) as info:
        _run([Reply(502)], TARGET, clock)
    assert (info.value.why, info.value.attempt, info.value.failure) == ("attempts", 5, "answered 502")
    assert len(clock.slept) == 4  # no pause after the last try


def test_a_pause_that_would_pass_the_deadline_is_not_taken(clock: Clock) -> None:
    """Ledger-style: no bound on attempts; each try takes 1 s; it ends at the 10 s deadline, not after."""
    with pytest.raises(GaveUp) as info:
        _run([Retry("timed out")], LEDGER, clock, deadline=10.0, took=1.0)
    assert info.value.why == "deadline" and info.value.failure == "timed out"
    assert clock.now < 10.0 and sum(clock.slept) + info.value.attempt * 1.0 == pytest.approx(clock.now)
    with pytest.raises(GaveUp) as info:  # a Retry-After past the deadline: not waited for either
        _run([Reply(429, {"retry-after": "30"})], LEDGER, clock, deadline=clock.now + 10.0)
    assert info.value.why == "deadline" and info.value.asked == 30.0


def test_no_try_is_started_once_the_deadline_has_passed(clock: Clock) -> None:
    with pytest.raises(GaveUp) as info:
        _run([Reply(200)], TARGET, clock, deadline=0.0)
    assert (info.value.why, info.value.attempt, info.value.failure) == ("no time", 0, None)


def test_a_final_failure_is_not_retried(clock: Clock) -> None:
    with pytest.raises(ValueError, match="refused"):
        _run([ValueError("refused")], TARGET, clock)
    assert clock.slept == []


def test_unbounded_attempts_need_a_deadline(clock: Clock) -> None:
    with pytest.raises(ValueError, match="finite deadline"):
        _run([Reply(503)], LEDGER, clock)


# Both clients against a real server that asks for its pause as an HTTP date (the ledger's client read
# only seconds before this loop was shared; the suspect client read Retry-After on 429 only).


@dataclass
class Busy:
    calls: list[float] = field(default_factory=list)

    async def answer(self, request: Request) -> JSONResponse:
        self.calls.append(time.monotonic())
        if len(self.calls) == 1:
            later = email.utils.formatdate(time.time() + 2, usegmt=True)  # 1 to 2 s, whole seconds
            return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": later})
        return JSONResponse({"ok": True})


@pytest.fixture
def busy() -> Iterator[tuple[str, Busy]]:
    from backmark.infra.asgi import start_server

    state = Busy()
    running = start_server(Starlette(routes=[Route("/{path:path}", state.answer)]))
    try:
        yield running.url, state
    finally:
        running.stop()


def test_both_clients_wait_for_a_retry_after_date_on_503(busy: tuple[str, Busy]) -> None:
    from backmark.ledger.client import RegistryClient
    from backmark.targets.client import ClientConfig, HttpClient

    url, state = busy
    heard: list[str] = []
    with RegistryClient(url, deadline=10, on_retry=heard.append) as client:
        assert client.request("GET", "/x") == (200, {"ok": True}, True)
    assert len(state.calls) == 2 and state.calls[1] - state.calls[0] >= 0.9
    assert heard[0].startswith(f"registry {url}: 503: 503 busy; retrying in ")
    state.calls.clear()
    config = ClientConfig(timeout=5, attempts=3, backoff=0.05, deadline=10)
    with HttpClient(config, what="v2 server") as http:
        assert http.request("GET", url + "/v2/models/m") == {"ok": True}
    assert len(state.calls) == 2 and state.calls[1] - state.calls[0] >= 0.9
