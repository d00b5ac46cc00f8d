"""The registry client and commands against registries that lie or misbehave: each ends, exit 2, one line.

Exit status 1 means "a bad entry": an answer that is not what a registry sends is an error (2), never
a verdict (issue 21, item 7).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backmark.cli.main import main
from backmark.errors import BackmarkError
from backmark.identity import new_identity
from backmark.infra.asgi import start_server
from backmark.ledger.client import RegistryClient

IDENTITY = new_identity().public.to_json()


def _liar(head: bytes, entries: Any) -> Starlette:
    async def identity(request: Request) -> JSONResponse:
        return JSONResponse(IDENTITY)

    async def head_(request: Request) -> Response:
        return Response(head, media_type="application/json")

    async def listing(request: Request) -> Response:
        after = int(request.query_params.get("after", "0"))
        body = entries(after) if callable(entries) else entries
        return Response(body, media_type="application/json")

    return Starlette(
        routes=[Route("/v1/identity", identity), Route("/v1/head", head_), Route("/v1/entries", listing)]
    )


@pytest.fixture
def liar() -> Iterator[Any]:
    running: list[Any] = []

    def start(
        head: bytes = b'{"entry": 0, "entry_hash": "' + b"0" * 64 + b'", "timestamp": null}',
        entries: Any = b'{"entries": [], "next_after": null}',
    ) -> str:
        server = start_server(_liar(head, entries))
        running.append(server)
        return server.url

    yield start
    for server in running:
        server.stop()


def test_a_listing_that_always_says_there_is_more_ends_at_once(liar: Any) -> None:
    url = liar(entries=lambda after: f'{{"entries": [], "next_after": {after + 1}}}'.encode())
    start = time.monotonic()
    with RegistryClient(url, deadline=30) as client, pytest.raises(BackmarkError, match="there is more"):
        client.lookup(vk_digest="a" * 64)
    assert time.monotonic() - start < 5


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("head", "entries", "argv"),
    [
        (DEEP, None, ["audit"]),
        (b'{"entry": Infinity, "entry_hash": "' + b"0" * 64 + b'", "timestamp": null}', None, ["audit"]),
        (b'{"entry": 1e400, "entry_hash": "x", "timestamp": null}', None, ["audit"]),
        (b'{"entry": true, "entry_hash": "' + b"0" * 64 + b'", "timestamp": null}', None, ["audit"]),
        (None, DEEP, ["lookup", "--vk-digest", "a" * 64]),
        (None, b'{"entries": [{"entry": NaN}], "next_after": null}', ["lookup", "--vk-digest", "a" * 64]),
        (None, b'{"entries": [{"entry": 1}], "next_after": null}', ["lookup", "--vk-digest", "a" * 64]),
        (None, b'{"entries": [], "next_after": 1.5}', ["audit"]),
    ],
)
def test_malformed_answers_exit_2_with_one_line(
    liar: Any, capsys: pytest.CaptureFixture[str], head: bytes | None, entries: bytes | None, argv: list[str]
) -> None:
    kw = {k: v for k, v in (("head", head), ("entries", entries)) if v is not None}
    url = liar(**kw)
    code = main(["registry", *argv, "--registry", url, "--deadline", "10"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("backmark: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_an_answer_httpx_cannot_decode_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A body that says it is gzip and is not: httpx's DecodingError is not a transport error."""

    async def head(request: Request) -> Response:
        return Response(
            b"not gzip at all", media_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    server = start_server(Starlette(routes=[Route("/v1/head", head)]))
    try:
        code = main(["registry", "audit", "--registry", server.url, "--deadline", "10"])
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("backmark: error:") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("deadline", ["inf", "nan", "0"])
def test_a_deadline_that_is_not_a_positive_finite_time_is_refused(
    liar: Any, capsys: pytest.CaptureFixture[str], deadline: str
) -> None:
    url = liar()
    code = main(["registry", "lookup", "--vk-digest", "a" * 64, "--registry", url, "--deadline", deadline])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--deadline must be positive and finite" in err, err
