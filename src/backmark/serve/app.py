"""A model served over the Open Inference Protocol v2 (REST), and over backmark's JSON contract.

Built on Starlette, a small ASGI framework that is maintained, typed and needs no schema layer; uvicorn
runs it (:mod:`backmark.serve.runner`). Endpoints, for a model served as NAME::

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
``{"error": "..."}`` with status 400 (bad request), 404 (unknown model) or 413 (body too large).
"""

from __future__ import annotations

import json
import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from torch import nn

from backmark import __version__
from backmark.errors import BackmarkError
from backmark.models.modes import evaluating
from backmark.targets import Target

if TYPE_CHECKING:
    from backmark.response import ResponseLog, ResponseMark

MAX_BODY_BYTES = 64 * 2**20  # about 4000 1x28x28 images of JSON floats per request
MAX_BATCH = 1024
_INPUT_TYPES: dict[str, type[np.generic]] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "UINT8": np.uint8,
}


class BadRequest(Exception):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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


async def _json_body(request: Request) -> Any:
    size = 0
    parts: list[bytes] = []
    async for part in request.stream():
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"request body larger than {MAX_BODY_BYTES} bytes", status=413)
        parts.append(part)
    try:
        return json.loads(b"".join(parts))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None


def _images(
    data: Any, shape: list[int], dtype: type[np.generic], image_shape: tuple[int, ...]
) -> torch.Tensor:
    """Float32 (B, C, H, W) in [0, 1] from flat or nested ``data`` declared as ``shape``."""
    if len(shape) != 4 or tuple(shape[1:]) != image_shape or not 1 <= shape[0] <= MAX_BATCH:
        raise BadRequest(
            f"input shape must be [B, {', '.join(map(str, image_shape))}] with 1 <= B <= {MAX_BATCH}"
        )
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"input data must be numbers that fit {np.dtype(dtype).name}") from None
    if array.size != math.prod(shape) or (array.ndim > 1 and list(array.shape) != shape):
        raise BadRequest(f"input data of shape {list(array.shape)} do not fit the declared shape {shape}")
    x = torch.from_numpy(array.reshape(shape).astype(np.float32))
    return x / 255.0 if dtype is np.uint8 else x


def create_app(
    model: nn.Module | Target,
    *,
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    labels_only: bool = False,
    response: ResponseMark | None = None,
    query_log: ResponseLog | None = None,
) -> Starlette:
    """A Starlette app serving ``model`` as ``name`` (see the module doc for the endpoints).

    With ``response``, a keyed fraction of the answers is altered (labels and logits alike) and, with
    ``query_log``, each altered answer is recorded with the caller's address.
    """
    served = _Model(model, labels_only=labels_only)

    def marked_answer(images: torch.Tensor, caller: str | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        logits, labels = served(images)
        if response is None:
            return logits, labels
        logits, labels, altered = response.apply(images, logits, labels)
        if query_log is not None:
            query_log.record(altered, caller=caller)
        return logits, labels

    def caller(request: Request) -> str | None:
        return request.client.host if request.client else None

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
            raise BadRequest(f"unknown model {asked!r}; this server serves {name!r}", status=404)

    async def server_meta(request: Request) -> JSONResponse:
        return JSONResponse({"name": "backmark", "version": __version__, "extensions": []})

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def model_meta(request: Request) -> JSONResponse:
        check_name(request)
        return JSONResponse(metadata)

    async def model_ready(request: Request) -> JSONResponse:
        check_name(request)
        return JSONResponse({"name": name, "ready": True})

    async def infer(request: Request) -> JSONResponse:
        check_name(request)
        if "inference-header-content-length" in request.headers:
            raise BadRequest("the binary tensor extension is not supported; send JSON tensors")
        body = await _json_body(request)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise BadRequest('the request needs "inputs": a list of one tensor named "images"')
        tensor = inputs[0]
        if tensor.get("name") != "images":
            raise BadRequest(f"unknown input {tensor.get('name')!r}; the model's input is 'images'")
        dtype = _INPUT_TYPES.get(str(tensor.get("datatype")))
        shape = tensor.get("shape")
        if dtype is None or not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise BadRequest(f"input needs an integer shape and a datatype among {', '.join(_INPUT_TYPES)}")
        wanted = body.get("outputs") or [{"name": n} for n in outputs]
        if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
            raise BadRequest('"outputs" must be a list of {"name": ...} objects')
        names = [o.get("name") for o in wanted]
        unknown = [n for n in names if n not in outputs]
        if unknown:
            raise BadRequest(f"unknown output {unknown[0]!r}; outputs: {', '.join(outputs)}")
        images = _images(tensor.get("data"), shape, dtype, input_shape)
        logits, labels = await run_in_threadpool(marked_answer, images, caller(request))
        answer: list[dict[str, Any]] = []
        for n in names:
            if n == "logits" and logits is not None:
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
        body = await _json_body(request)
        data = body.get("images") if isinstance(body, dict) else None
        if not isinstance(data, list) or not all(isinstance(image, list) for image in data):
            raise BadRequest('the request needs "images": a list of C x H x W nested lists')
        images = _images(data, [len(data), *input_shape], np.float32, input_shape)
        _, labels = await run_in_threadpool(marked_answer, images, caller(request))
        return JSONResponse({"labels": labels.tolist()})

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status if isinstance(exc, BadRequest) else 500  # a BackmarkError: the model failed
        return JSONResponse({"error": str(exc)}, status_code=status)

    routes = [
        Route("/v2", server_meta),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}", model_meta),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/predict/{name}", predict, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={BadRequest: refused, BackmarkError: refused})
