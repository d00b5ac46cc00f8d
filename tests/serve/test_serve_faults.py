"""The remote client against a real local server that misbehaves on purpose: each fault's documented outcome.

Documented in docs/targets.md: 429 and 5xx and timeouts are retried (429 after its Retry-After), at most
``attempts`` times; connection refused, other 4xx, malformed JSON and wrongly shaped answers are not;
every failure is one BackmarkError line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from backmark.errors import BackmarkError
from backmark.keys import MarkingKey
from backmark.serve import start_server
from backmark.targets import ClientConfig, DecoyTarget, V2Target
from backmark.verify import verify

FAST = ClientConfig(timeout=2.0, attempts=3, backoff=0.05, max_wait=5.0)
META = {
    "name": "m",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
    "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
}


@dataclass
class Script:
    """What the next infer requests get, one action each; the last action repeats. ``calls`` counts them."""

    actions: list[str] = field(default_factory=lambda: ["ok"])
    calls: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)


def _app(script: Script) -> Starlette:
    async def meta(request: Request) -> JSONResponse:
        return JSONResponse(META)

    async def infer(request: Request) -> Response:
        body = await request.json()
        batch = body["inputs"][0]["shape"][0]
        script.headers.append(dict(request.headers))
        action = script.actions[min(script.calls, len(script.actions) - 1)]
        script.calls += 1
        if action.startswith("sleep"):
            await asyncio.sleep(float(action.split()[1]))
        elif action.startswith("status"):
            return PlainTextResponse("model exploded\nwith a traceback", status_code=int(action.split()[1]))
        elif action.startswith("429"):
            return PlainTextResponse("slow down", status_code=429, headers={"Retry-After": action.split()[1]})
        elif action == "redirect":
            return Response(
                status_code=307, headers={"Location": "http://elsewhere.invalid/v2/models/m/infer"}
            )
        elif action == "malformed":
            return Response(b'{"outputs": [', media_type="application/json")
        elif action == "short":
            batch -= 1
        elif action == "auth" and request.headers.get("x-key") != "s3cret-value":
            return JSONResponse({"error": "bad key"}, status_code=401)
        label = {"name": "label", "datatype": "INT64", "shape": [batch], "data": [0] * batch}
        return JSONResponse({"outputs": [label]})

    return Starlette(
        routes=[Route("/v2/models/m", meta), Route("/v2/models/m/infer", infer, methods=["POST"])]
    )


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    running = start_server(_app(script))
    try:
        yield f"{running.url}/v2/models/m", script
    finally:
        running.stop()


@pytest.fixture
def scripted(server: tuple[str, Script]) -> Iterator[tuple[str, Script]]:
    url, script = server
    script.actions, script.calls, script.headers = ["ok"], 0, []
    yield url, script


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _run(url: str, config: ClientConfig = FAST, n: int = 4) -> tuple[torch.Tensor, float]:
    start = time.monotonic()
    labels = V2Target(url, config=config).predict(_images(n))
    return labels, time.monotonic() - start


def test_answers_slower_than_the_timeout_fail_after_the_attempts(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.actions = ["sleep 1.0"]
    config = ClientConfig(timeout=0.25, attempts=2, backoff=0.05)
    start = time.monotonic()
    with pytest.raises(
        BackmarkError, match=r"did not answer within the 0.25 s timeout; gave up after 2 attempts"
    ):
        _run(url, config)
    assert time.monotonic() - start < 1.5 and script.calls == 2


def test_one_slow_answer_is_retried(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.actions = ["sleep 1.0", "ok"]
    labels, _ = _run(url, ClientConfig(timeout=0.25, attempts=2, backoff=0.05))
    assert labels.tolist() == [0, 0, 0, 0] and script.calls == 2


def test_server_errors_then_success_is_retried_with_backoff(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.actions = ["status 500", "status 503", "ok"]
    said: list[str] = []
    labels, seconds = _run(url, dataclasses.replace(FAST, on_retry=said.append))
    assert labels.tolist() == [0, 0, 0, 0] and script.calls == 3
    assert seconds >= 0.05 + 0.1  # backoff 0.05 s, doubled
    assert len(said) == 2 and re.fullmatch(
        rf"v2 server {re.escape(url)}: attempt 1/3 failed \(answered 500 Internal Server Error: model "
        r"exploded with a traceback\); retrying in 0\.1 s, 1\d\d s left",
        said[0],
    ), said
    assert said[1].startswith(f"v2 server {url}: attempt 2/3 failed (answered 503 Service Unavailable")


def test_a_silent_server_is_given_up_on_at_the_deadline(silent_url: str) -> None:
    """A server that accepts and never answers: the request timeout is clipped to the time left."""
    said: list[str] = []
    config = ClientConfig(timeout=30.0, attempts=5, deadline=1.0, on_retry=said.append)
    start = time.monotonic()
    with pytest.raises(BackmarkError) as info:
        V2Target(f"{silent_url}/v2/models/m", config=config)
    seconds = time.monotonic() - start
    assert 0.9 <= seconds < 2.5, seconds  # not 30 s, nor 5 x 30 s plus back-off
    message = str(info.value)
    assert re.fullmatch(
        rf"v2 server {re.escape(silent_url)}/v2/models/m did not answer in the 1 s left before the "
        r"deadline; gave up after 1 attempt: the 1 s deadline of the whole verification has passed "
        r"\(deadline\)",
        message,
    ), message
    assert said == []  # no retry could have finished in time, so none was announced


def test_retries_are_announced_and_stop_at_the_deadline(silent_url: str) -> None:
    said: list[str] = []
    config = ClientConfig(timeout=0.3, attempts=50, backoff=0.1, deadline=1.6, on_retry=said.append)
    start = time.monotonic()
    with pytest.raises(BackmarkError, match=r"deadline of the whole verification has passed") as info:
        V2Target(f"{silent_url}/v2/models/m", config=config)
    assert time.monotonic() - start < 3.0
    assert "gave up after 50 attempts" not in str(info.value)
    assert 2 <= len(said) < 50
    assert said[0].startswith(
        f"v2 server {silent_url}/v2/models/m: attempt 1/50 failed (did not answer within the 0.3 s "
        "timeout); retrying in 0.1 s, 1 s left"
    ), said


@pytest.mark.parametrize("deadline", [0.0, -1.0, math.nan, math.inf])
def test_a_deadline_must_be_a_positive_number(deadline: float) -> None:
    with pytest.raises(BackmarkError, match="deadline must be a positive number of seconds"):
        ClientConfig(deadline=deadline)  # refused when built
    ClientConfig(deadline=None).check()  # no bound at all is allowed in Python


def test_persistent_server_errors_give_up_in_one_line(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.actions = ["status 500"]
    with pytest.raises(BackmarkError) as info:
        _run(url)
    message = str(info.value)
    assert "answered 500 Internal Server Error: model exploded with a traceback; gave up after 3" in message
    assert "\n" not in message and script.calls == 3


def test_429_waits_for_retry_after(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.actions = ["429 1", "ok"]
    labels, seconds = _run(url)
    assert labels.tolist() == [0, 0, 0, 0] and script.calls == 2 and seconds >= 0.95


def test_429_asking_for_too_long_a_wait_is_an_error_at_once(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.actions = ["429 3600"]
    with pytest.raises(BackmarkError, match=r"answered 429 Too Many Requests.*retry after 3600 s.*max_wait"):
        _run(url)
    assert script.calls == 1


def test_malformed_json_is_not_retried(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.actions = ["malformed"]
    with pytest.raises(BackmarkError, match=r"answered 200 with malformed JSON"):
        _run(url)
    assert script.calls == 1


def test_redirects_are_not_followed(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.actions = ["redirect"]
    with pytest.raises(
        BackmarkError, match=r"answered 307 Temporary Redirect \(a redirect to http://elsewhere"
    ):
        _run(url)
    assert script.calls == 1


def test_a_wrongly_shaped_batch_fails_the_whole_verification(
    scripted: tuple[str, Script], key30: MarkingKey
) -> None:
    """The second batch answers one label short: an error, never a count over the labels that came."""
    url, script = scripted
    script.actions = ["ok", "short"]
    target = V2Target(url, config=ClientConfig(batch_size=20, attempts=1))
    with pytest.raises(BackmarkError, match=r"answered shape \[9\] for a batch of 10 images"):
        verify(target, key30, key30.verification_key())
    with pytest.raises(BackmarkError, match="answered shape"):  # the same through decoys
        DecoyTarget(target, torch.zeros(10, 1, 28, 28, dtype=torch.uint8), count=10, seed=0).predict(
            _images(4)
        )


def test_connection_refused_is_one_line_at_once() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(
        BackmarkError, match=rf"cannot connect to v2 server http://127.0.0.1:{port}/v2/models/m"
    ):
        V2Target(f"http://127.0.0.1:{port}/v2/models/m", config=FAST)
    assert time.monotonic() - start < 1.0  # refused is final: no retries


def test_auth_header_comes_from_the_environment(
    scripted: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = scripted
    script.actions = ["auth"]
    config = ClientConfig(attempts=1, auth_env="BACKMARK_TEST_KEY", auth_header="X-Key")
    with pytest.raises(BackmarkError, match=r"BACKMARK_TEST_KEY .* is not set"):
        _run(url, config)
    monkeypatch.setenv("BACKMARK_TEST_KEY", "wrong-value")
    with pytest.raises(BackmarkError, match="answered 401 Unauthorized") as info:
        _run(url, config)
    assert "wrong-value" not in str(info.value)
    monkeypatch.setenv("BACKMARK_TEST_KEY", "s3cret-value")
    assert _run(url, config)[0].tolist() == [0, 0, 0, 0]
    assert script.headers[-1]["x-key"] == "s3cret-value"


def test_rate_limit_spaces_requests(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    _, seconds = _run(url, ClientConfig(batch_size=1, rate=20.0), n=6)  # metadata + 6 requests at 20/s
    assert script.calls == 6 and seconds >= 6 / 20.0 - 0.02
