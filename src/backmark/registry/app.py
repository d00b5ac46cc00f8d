"""The registry's HTTP API, on Starlette (the web stack of ``backmark serve``); uvicorn runs it.

::

    GET  /v1/identity             the server's public identity (the key that signs receipts)
    GET  /v1/head                 {"entry": N, "entry_hash": ..., "timestamp": ...}: the last entry
    POST /v1/entries              a signed submission -> 201 {"receipt": ..., "entry": ...}
    GET  /v1/entries?vk_digest=H&model_digest=H&owner=FP&after=N&limit=M
                                  {"entries": [...], "next_after": N or null}, in order
    GET  /v1/entries/N            one entry

Refusals are ``{"error": ONE LINE, "code": WORD}``: 400 ``malformed`` (not JSON, wrong fields),
``unsigned``, ``wrong-registry``; 403 ``bad-signature``; 404 ``not-found``; 409 ``replay`` (this exact
submission is recorded; the body's ``entry`` is it), ``duplicate`` (this identity registered this key
already), ``conflict``; 413 ``too-large`` (body over 64 KiB); 422 ``stale`` (signed more than 5 minutes
from the server's clock); 503 ``database-unavailable`` (unreachable, locked or read-only: nothing was
written; retry later). Every refusal happens before or instead of the commit, so nothing recorded is
ever lost or changed by one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backmark.errors import BackmarkError
from backmark.identity import Identity, is_hex_digest
from backmark.registry.chain import MAX_SKEW, Entry, Refused, check_fresh, check_submission
from backmark.registry.store import PAGE, Store

MAX_BODY_BYTES = 64 * 2**10  # a submission is about 700 bytes


async def _body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(f"the body is larger than {MAX_BODY_BYTES} bytes", status=413, code="too-large")
    size, parts = 0, []
    async for part in request.stream():
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise Refused(f"the body is larger than {MAX_BODY_BYTES} bytes", status=413, code="too-large")
        parts.append(part)
    try:
        return json.loads(b"".join(parts))
    except (ValueError, UnicodeDecodeError):
        raise Refused("the body is not valid JSON", status=400, code="malformed") from None


def _digest_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and not is_hex_digest(value):
        raise Refused(f"{name} must be 64 lower-case hex digits", status=400, code="malformed")
    return value


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise Refused(f"{name} must be an integer", status=400, code="malformed") from None
    if not low <= value <= high:
        raise Refused(f"{name} must be between {low} and {high}", status=400, code="malformed")
    return value


def create_app(
    store: Store,
    server: Identity,
    *,
    max_skew: float = MAX_SKEW,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Starlette:
    """The API over ``store``, signing receipts with ``server`` (``store.init`` must have run)."""
    public = server.public

    def entry_json(entry: Entry) -> dict[str, Any]:
        return entry.to_json(public)

    async def identity(request: Request) -> JSONResponse:
        return JSONResponse(public.to_json())

    async def head(request: Request) -> JSONResponse:
        seq, digest, timestamp = await run_in_threadpool(store.head)
        return JSONResponse({"entry": seq, "entry_hash": digest, "timestamp": timestamp})

    async def submit(request: Request) -> JSONResponse:
        submission = check_submission(await _body(request), registry=public.fingerprint)
        check_fresh(submission, clock(), max_skew=max_skew)
        entry = await run_in_threadpool(store.append, submission, server=server, now=clock)
        return JSONResponse({"receipt": entry.receipt(public), "entry": entry_json(entry)}, status_code=201)

    async def listing(request: Request) -> JSONResponse:
        limit = _int_param(request, "limit", PAGE, 1, PAGE)
        found = await run_in_threadpool(
            store.entries,
            vk_digest=_digest_param(request, "vk_digest"),
            model_digest=_digest_param(request, "model_digest"),
            owner=_digest_param(request, "owner"),
            after=_int_param(request, "after", 0, 0, 2**62),
            limit=limit,
        )
        more = found[-1].seq if len(found) == limit else None
        return JSONResponse({"entries": [entry_json(e) for e in found], "next_after": more})

    async def one(request: Request) -> JSONResponse:
        try:
            seq = int(request.path_params["seq"])
        except ValueError:
            raise Refused("the entry number must be an integer", status=400, code="malformed") from None
        found = await run_in_threadpool(store.entries, after=seq - 1, limit=1)
        if not found or found[0].seq != seq:
            raise Refused(f"there is no entry {seq}", status=404, code="not-found")
        return JSONResponse(entry_json(found[0]))

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, Refused):
            body: dict[str, Any] = {"error": str(exc), "code": exc.code}
            if isinstance(exc.detail, Entry):
                body["entry"] = entry_json(exc.detail)
            elif exc.detail is not None:
                body["entry_number"] = exc.detail
            headers = {"Retry-After": "1"} if exc.status == 503 else None
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
