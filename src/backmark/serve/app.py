"""A model served over the Open Inference Protocol v2 (REST), and over backmark's JSON contract.

Built on Starlette, a small ASGI framework that is maintained, typed and needs no schema layer; uvicorn
runs it (:mod:`backmark.infra.asgi`). Endpoints, for a model served as NAME::

    GET  /v2                         server metadata
    GET  /v2/health/live, /ready     200 while the server runs
    GET  /v2/models/NAME             model metadata: input "images" FP32 [-1, C, H, W]; outputs
                                     "logits" FP32 [-1, classes] and "label" INT64 [-1]
    GET  /v2/models/NAME/ready       200
    POST /v2/models/NAME/infer       named tensors in, the requested outputs (default: all) out
    POST /predict/NAME               {"images": (B, C, H, W) nested lists in [0, 1]} -> {"labels": [...]}

Any ``nn.Module`` is served with both outputs; any other :class:`~backmark.targets.Target` (an evasion
wrapper, an exported file) with "label" only, as is a module with ``labels_only``. With a response mark
(:mod:`backmark.response`) both endpoints serve the marked answers and log the altered ones. Errors are JSON
``{"error": "..."}`` with status 400 (bad request), 401 (a token is required), 404 (unknown model), 413
(body too large), 422 (the model's answer is not finite), 429 (the caller's query-log quota is reached)
or 503 (busy, or the query log is unavailable; ``Retry-After``).

**Limits** (:class:`ServeLimits`), all checked before the work they guard: a request holds at most
``max_batch`` images; its body may be at most :func:`body_limit` bytes (sized from the model's input
shape and ``max_batch``) and is refused by its Content-Length before it is read; a body with more JSON
arrays or commas than such a batch can need is refused before it is parsed; parsing and inference run
on worker threads, at most ``workers`` requests at once, with at most ``body_budget`` bytes of bodies
held at once (more waits in no queue: 503), so the event loop stays free for health checks. Each output
is answered at most once per request.
"""

from __future__ import annotations

import contextlib
import hmac
import threading
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from torch import nn

from backmark.constants import VERSION as __version__
from backmark.errors import BackmarkError
from backmark.infra.asgi import BodyTooLarge, ClientGone, read_body
from backmark.infra.jsonproc import JsonPool
from backmark.infra.schema import (
    Anything,
    Array,
    Const,
    Integer,
    OneOf,
    Record,
    SchemaError,
    Text,
)
from backmark.models.modes import evaluating
from backmark.serve.requests import (
    INPUT_TYPES,
    MAX_BATCH,
    BadRequest,
    ServeLimits,
    body_limit,
    fits_a_batch,
    images_from,
    token_client,
    tokens_from_env,
)
from backmark.targets import Target

if TYPE_CHECKING:
    from backmark.response import ResponseLog, ResponseMark

__all__ = ["MAX_BATCH", "BadRequest", "ServeLimits", "body_limit", "create_app", "tokens_from_env"]


class _Model:
    """The served model behind a lock (a module's eval mode and buffers are not thread-safe)."""

    def __init__(self, model: nn.Module | Target, *, labels_only: bool) -> None:
        self.model = model
        self.logits = isinstance(model, nn.Module) and not labels_only
        self._lock = threading.Lock()

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(logits (B, K) float32 or None, labels (B,) int64) for float images (B, C, H, W) in [0, 1]."""
        with self._lock:
            if not isinstance(self.model, nn.Module):
                return None, self.model.predict(images).to(torch.int64)
            with evaluating(self.model), torch.inference_mode():
                logits = self.model(images).float()
            return (logits if self.logits else None), logits.argmax(dim=1)


def create_app(
    model: nn.Module | Target,
    *,
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    labels_only: bool = False,
    response: ResponseMark | None = None,
    query_log: ResponseLog | None = None,
    tokens: Mapping[str, str] | None = None,
    limits: ServeLimits | None = None,
) -> Starlette:
    """A Starlette app serving ``model`` as ``name`` (see the module doc for the endpoints).

    With ``response``, a keyed fraction of the answers is altered (labels and logits alike) and, with
    ``query_log``, each altered answer is recorded with its caller. ``tokens`` (None: anyone may ask)
    are the bearer tokens the model's endpoints require (``Authorization: Bearer TOKEN``); health
    checks and ``GET /v2`` stay open. ``limits``: :class:`ServeLimits`.
    """
    served = _Model(model, labels_only=labels_only)
    lim = limits or ServeLimits()
    max_body = body_limit(input_shape, lim.max_batch)
    workers = threading.BoundedSemaphore(lim.workers)
    budget = {"free": max_body * lim.body_budget_batches}
    known = [t.encode() for t in (tokens or {})]
    pool = JsonPool(workers=lim.workers)

    def marked_answer(images: torch.Tensor, caller: str | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        logits, labels = served(images)
        if response is None:
            return logits, labels
        logits, labels, altered = response.apply(images, logits, labels)
        if query_log is not None:
            query_log.record(altered, caller=caller, quota=lim.log_quota)
        return logits, labels

    def caller(request: Request) -> str | None:
        """The caller's token (``token:HASH16``) with ``tokens``, else its address; checks the token."""
        if tokens is None:
            return request.client.host if request.client else None
        sent = request.headers.get("authorization", "")
        scheme, _, token = sent.partition(" ")
        given = token.strip().encode()
        # compare with every token, each in constant time, so timing tells nothing about which one matched
        match = [hmac.compare_digest(given, k) for k in known]
        if scheme.lower() != "bearer" or not given or not any(match):
            raise BadRequest("this server needs a valid token: Authorization: Bearer TOKEN", status=401)
        return token_client(token.strip())

    async def body_of(request: Request, array_at: tuple[str | int, ...]) -> tuple[Any, Any]:
        """The parsed body and the array at ``array_at`` in it, within the body budget; a large body is
        parsed in a worker process (:class:`~backmark.infra.jsonproc.JsonPool`)."""
        declared = request.headers.get("content-length")
        reserve = max_body if declared is None or not declared.isdigit() else min(max_body, int(declared))
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise BadRequest(f"request body larger than {max_body} bytes", status=413)
        if reserve > budget["free"]:
            raise BadRequest("the server is busy with other large requests; retry", status=503, retry_after=1)
        budget["free"] -= reserve
        try:
            try:
                data = await read_body(request, max_body)
            except BodyTooLarge:
                raise BadRequest(f"request body larger than {max_body} bytes", status=413) from None
            except ClientGone:
                raise BadRequest("the client went away before its body arrived") from None
            fits_a_batch(data, input_shape, lim.max_batch)
            try:
                doc, arrays = await pool.parse(data, [array_at])
            except SchemaError as exc:
                raise BadRequest(str(exc)) from None
            return doc, arrays[0]
        finally:
            budget["free"] += reserve

    def worker(func: Any, *args: Any) -> Any:
        """Run ``func(*args)`` holding one of the ``workers`` slots (bounded CPU and memory)."""
        with workers:
            return func(*args)

    outputs = (["logits"] if served.logits else []) + ["label"]
    metadata = {
        "name": name,
        "versions": ["1"],
        "platform": "pytorch" if isinstance(model, nn.Module) else "backmark-target",
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, *input_shape]}],
        "outputs": (
            [{"name": "logits", "datatype": "FP32", "shape": [-1, num_classes]}] if served.logits else []
        )
        + [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    }

    def check_name(request: Request) -> None:
        asked = request.path_params["name"]
        if asked != name:
            raise BadRequest(f"unknown model {asked[:64]!r}; this server serves {name!r}", status=404)

    async def server_meta(request: Request) -> JSONResponse:
        return JSONResponse({"name": "backmark", "version": __version__, "extensions": []})

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def model_meta(request: Request) -> JSONResponse:
        check_name(request)
        caller(request)
        return JSONResponse(metadata)

    async def model_ready(request: Request) -> JSONResponse:
        check_name(request)
        caller(request)
        return JSONResponse({"name": name, "ready": True})

    request_schema = Record(
        {
            "id": Text(max_len=256),
            "parameters": Anything(),
            "inputs": Array(
                Record(
                    {
                        "name": Const("images"),
                        "shape": Array(Integer(0, 2**31), 1, 8),
                        "datatype": OneOf(tuple(INPUT_TYPES)),
                        "data": Anything(),
                        "parameters": Anything(),
                    },
                    optional=frozenset({"parameters"}),
                ),
                1,
                1,
            ),
            "outputs": Array(
                Record(
                    {"name": OneOf(tuple(outputs)), "parameters": Anything()},
                    optional=frozenset({"parameters"}),
                ),
                0,
                len(outputs),
                unique=True,
            ),
        },
        optional=frozenset({"id", "parameters", "outputs"}),
    )

    def finite(tensor: torch.Tensor | None) -> None:
        if tensor is not None and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BadRequest("the model's scores for this input are not finite numbers", status=422)

    async def infer(request: Request) -> JSONResponse:
        check_name(request)
        who = caller(request)
        if "inference-header-content-length" in request.headers:
            raise BadRequest("the binary tensor extension is not supported; send JSON tensors")
        body, array = await body_of(request, ("inputs", 0, "data"))
        try:
            request_schema.check(body, "request")
        except SchemaError as exc:
            raise BadRequest(str(exc)) from None
        tensor = body["inputs"][0]
        dtype = INPUT_TYPES[tensor["datatype"]]
        names = [o["name"] for o in body.get("outputs") or [{"name": n} for n in outputs]]
        images = await run_in_threadpool(
            worker, images_from, array, tensor["shape"], dtype, input_shape, lim.max_batch
        )
        logits, labels = await run_in_threadpool(worker, marked_answer, images, who)
        answer: list[dict[str, Any]] = []
        for n in names:
            if n == "logits" and logits is not None:
                finite(logits)
                answer.append(
                    {
                        "name": n,
                        "datatype": "FP32",
                        "shape": list(logits.shape),
                        "data": logits.flatten().tolist(),
                    }
                )
            elif n == "label":
                answer.append(
                    {"name": n, "datatype": "INT64", "shape": [len(labels)], "data": labels.tolist()}
                )
        reply: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": answer}
        if "id" in body:
            reply["id"] = body["id"]
        return JSONResponse(reply)

    async def predict(request: Request) -> JSONResponse:
        check_name(request)
        who = caller(request)
        body, array = await body_of(request, ("images",))
        if not isinstance(body, dict) or set(body) != {"images"}:
            raise BadRequest('the request must be {"images": a list of C x H x W nested lists}')
        count = array.shape[0] if isinstance(array, np.ndarray) and array.ndim == 4 else -1
        if count < 1:
            raise BadRequest('"images" must be a non-empty list of C x H x W nested lists of numbers')
        shape = [count, *input_shape]
        images = await run_in_threadpool(
            worker, images_from, array, shape, np.float32, input_shape, lim.max_batch
        )
        _, labels = await run_in_threadpool(worker, marked_answer, images, who)
        return JSONResponse({"labels": labels.tolist()})

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        # BadRequest, the query log's refusals (429, 503: status and retry_after), else a BackmarkError
        # from a served Target, which is the model failing: 500
        status = getattr(exc, "status", 500)
        after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(after)} if after is not None else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)

    routes = [
        Route("/v2", server_meta),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}", model_meta),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/predict/{name}", predict, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(pool.close)  # the parsing processes end with the server

    return Starlette(
        routes=routes, exception_handlers={BadRequest: refused, BackmarkError: refused}, lifespan=lifespan
    )
