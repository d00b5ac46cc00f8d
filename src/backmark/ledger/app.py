"""The registry's HTTP API, on Starlette (the web stack of ``backmark serve``); uvicorn runs it.

::

    GET  /v1/identity             the server's public identity (the key that signs receipts)
    GET  /v1/head                 {"entry": N, "entry_hash": ..., "timestamp": ...}: the last entry
    POST /v1/entries              a signed submission -> 201 {"receipt": ..., "entry": ...}
    GET  /v1/entries?vk_digest=H&model_digest=H&siblings_digest=H&owner=FP&after=N&limit=M
                                  {"entries": [...], "next_after": N or null}, in order
    GET  /v1/entries/N            one entry

Refusals are ``{"error": ONE LINE, "code": WORD}``: 400 ``malformed`` (not JSON, wrong fields),
``unsigned``, ``wrong-registry``; 403 ``bad-signature``; 404 ``not-found``; 409 ``replay`` (this exact
submission is recorded; the body's ``entry`` is it), ``duplicate`` (this identity registered this key
already), ``conflict``; 413 ``too-large`` (body over 64 KiB); 422 ``stale`` (signed more than 5 minutes
from the server's clock); 503 ``database-unavailable`` (unreachable, locked or read-only: nothing was
written; retry later). Every refusal happens before or instead of the commit, so nothing recorded is
ever lost or changed by one. 429 ``rate-limited`` (with ``Retry-After``) answers a client (an address)
that sends more than its rate: anyone may use the registry, nobody may flood it (docs/registry.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backmark.errors import BackmarkError
from backmark.identity import Identity, is_hex_digest
from backmark.infra.asgi import BodyTooLarge, ClientGone, read_body
from backmark.infra.ratelimit import RateLimit
from backmark.infra.schema import SchemaError, parse_json
from backmark.ledger.chain import MAX_SKEW, Entry, Refused, check_fresh, check_submission
from backmark.ledger.store import PAGE, Store

MAX_BODY_BYTES = 64 * 2**10  # a submission is about 700 bytes


MAX_SEQ = 2**62  # entry numbers and ``after`` beyond this are refused before the database sees them
_DIGITS = re.compile(r"[0-9]{1,19}")
_QUERY = {"vk_digest", "model_digest", "siblings_digest", "owner", "after", "limit"}


@dataclass(frozen=True)
class RateLimits:
    """Requests a second (on average, with a burst) that one client address may make."""

    reads: float = 50.0  # GET requests a second
    read_burst: float = 200.0
    writes: float = 2.0  # registrations a second
    write_burst: float = 20.0

    def __post_init__(self) -> None:
        for name, param in (("reads", "rate"), ("writes", "write_rate")):
            value = getattr(self, name)
            if not (0 < value <= 1e6):
                raise BackmarkError(
                    f"{{{param}}} must be requests a second in (0, 1000000], got {value}", params=[param]
                )

    @classmethod
    def of(cls, *, reads: float, writes: float) -> RateLimits:
        """Rates with the default burst sizes: 4 seconds' worth of reads, 10 seconds' worth of writes."""
        return cls(
            reads=reads, read_burst=max(1.0, 4 * reads), writes=writes, write_burst=max(1.0, 10 * writes)
        )


async def _body(request: Request) -> Any:
    try:
        data = await read_body(request, MAX_BODY_BYTES)
    except BodyTooLarge:
        raise Refused(
            f"the body is larger than {MAX_BODY_BYTES} bytes", status=413, code="too-large"
        ) from None
    except ClientGone:
        raise Refused("the client went away before its body arrived", status=400, code="malformed") from None
    try:
        return parse_json(data)
    except SchemaError as exc:
        raise Refused(str(exc), status=400, code="malformed") from None


def _digest_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and not is_hex_digest(value):
        raise Refused(f"{name} must be 64 lower-case hex digits", status=400, code="malformed")
    return value


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise Refused(f"{name} must be an integer between {low} and {high}", status=400, code="malformed")
    return int(text)


def create_app(
    store: Store,
    server: Identity,
    *,
    max_skew: float = MAX_SKEW,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    limits: RateLimits | None = None,
) -> Starlette:
    """The API over ``store``, signing receipts with ``server`` (``store.init`` must have run).

    ``limits``: each client address's request rates (None: no limit, as the tests' many clients on one
    address need; ``backmark registry serve`` always sets one).
    """
    public = server.public
    reads = writes = None
    if limits is not None:
        reads = RateLimit(limits.reads, limits.read_burst)
        writes = RateLimit(limits.writes, limits.write_burst)

    def throttle(request: Request, *, write: bool) -> None:
        address = request.client.host if request.client else "unknown"
        for bucket in (reads, writes) if write else (reads,):
            wait = bucket.take(address) if bucket is not None else 0.0
            if wait > 0:
                raise Refused(
                    f"too many requests from {address}; retry after {math.ceil(wait)} s",
                    status=429,
                    code="rate-limited",
                    detail=math.ceil(wait),
                )

    def entry_json(entry: Entry) -> dict[str, Any]:
        return entry.to_json(public)

    async def identity(request: Request) -> JSONResponse:
        throttle(request, write=False)
        return JSONResponse(public.to_json())

    async def head(request: Request) -> JSONResponse:
        throttle(request, write=False)
        seq, digest, timestamp = await run_in_threadpool(store.head)
        return JSONResponse({"entry": seq, "entry_hash": digest, "timestamp": timestamp})

    async def submit(request: Request) -> JSONResponse:
        throttle(request, write=True)
        submission = check_submission(await _body(request), registry=public.fingerprint)
        check_fresh(submission, clock(), max_skew=max_skew)
        entry = await run_in_threadpool(store.append, submission, server=server, now=clock)
        return JSONResponse({"receipt": entry.receipt(public), "entry": entry_json(entry)}, status_code=201)

    async def listing(request: Request) -> JSONResponse:
        throttle(request, write=False)
        odd = sorted(set(request.query_params) - _QUERY)
        if odd:
            raise Refused(
                f"unknown query parameter {odd[0][:40]!r}; known: {', '.join(sorted(_QUERY))}",
                status=400,
                code="malformed",
            )
        limit = _int_param(request, "limit", PAGE, 1, PAGE)
        found = await run_in_threadpool(
            store.entries,
            vk_digest=_digest_param(request, "vk_digest"),
            model_digest=_digest_param(request, "model_digest"),
            siblings_digest=_digest_param(request, "siblings_digest"),
            owner=_digest_param(request, "owner"),
            after=_int_param(request, "after", 0, 0, MAX_SEQ),
            limit=limit,
        )
        more = found[-1].seq if len(found) == limit else None
        return JSONResponse({"entries": [entry_json(e) for e in found], "next_after": more})

    async def one(request: Request) -> JSONResponse:
        throttle(request, write=False)
        text = request.path_params["seq"]
        if not _DIGITS.fullmatch(text):
            raise Refused("the entry number must be a positive integer", status=400, code="malformed")
        seq = int(text)
        if not 1 <= seq <= MAX_SEQ:
            raise Refused(f"there is no entry {seq}", status=404, code="not-found")
        found = await run_in_threadpool(store.entries, after=seq - 1, limit=1)
        if not found or found[0].seq != seq:
            raise Refused(f"there is no entry {seq}", status=404, code="not-found")
        return JSONResponse(entry_json(found[0]))

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, Refused):
            body: dict[str, Any] = {"error": str(exc), "code": exc.code}
            if isinstance(exc.detail, Entry):
                body["entry"] = entry_json(exc.detail)
            elif exc.status == 429:
                body["retry_after"] = exc.detail
            elif exc.detail is not None:
                body["entry_number"] = exc.detail
            headers = None
            if exc.status in (429, 503):
                headers = {"Retry-After": str(exc.detail if exc.status == 429 else 1)}
            return JSONResponse(body, status_code=exc.status, headers=headers)
        return JSONResponse({"error": str(exc), "code": "error"}, status_code=500)

    routes = [
        Route("/v1/identity", identity),
        Route("/v1/head", head),
        Route("/v1/entries", listing),
        Route("/v1/entries", submit, methods=["POST"]),
        Route("/v1/entries/{seq}", one),
    ]
    return Starlette(routes=routes, exception_handlers={Refused: refused, BackmarkError: refused})
