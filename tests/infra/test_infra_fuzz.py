"""Property-based fuzzing of both HTTP surfaces (the registry and the model server), on every CI run.

Hypothesis draws requests of three kinds: valid documents with one field replaced by an arbitrary JSON
value (huge integers, NaN, deep lists, odd strings), arbitrary JSON bodies and bytes, and arbitrary
paths and query strings. Whatever it draws, neither server may answer 5xx or log an error (uvicorn logs
every unhandled exception on ``uvicorn.error``), and the registry's audit is clean afterwards. The
examples are derandomized and bounded, so a run takes seconds and fails the same way every time.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from backmark.identity import Identity, new_identity
from backmark.infra.asgi import RunningServer, start_server
from backmark.ledger.app import create_app as registry_app
from backmark.ledger.audit import audit
from backmark.ledger.chain import make_submission
from backmark.ledger.store import Store
from backmark.serve import ServeLimits
from backmark.serve import create_app as model_app

HTTP = httpx.Client(timeout=20)  # one connection pool for every example: seconds, not minutes
FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,  # nothing written to the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN and Infinity on purpose


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def errors() -> Iterator[Errors]:
    handler = Errors()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, errors: Errors
) -> Iterator[tuple[str, Store, Identity]]:
    server = new_identity()
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'registry.db'}", lock_timeout=5.0)
    store.init(server.public)
    running = start_server(registry_app(store, server))
    try:
        yield running.url, store, server
    finally:
        running.stop()
        seq, digest, _ = store.head()
        report = audit(store.scan(), server=server.public, head=(seq, digest))
        store.close()
        assert report.ok, report.describe()
        assert not errors.records, [r.getMessage() for r in errors.records]


@pytest.fixture(scope="module")
def model(errors: Errors) -> Iterator[RunningServer]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    app = model_app(net, name="m", input_shape=(1, 4, 4), num_classes=3, limits=ServeLimits(max_batch=8))
    running = start_server(app)
    try:
        yield running
    finally:
        running.stop()
        assert not errors.records, [r.getMessage() for r in errors.records]


def _check(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        error = answer.json()["error"] if answer.headers.get("content-type") == "application/json" else ""
        assert "\n" not in error


SUBMISSION_FIELDS = ["format", "version", "registry", "vk_digest", "model_digest", "nonce", "signed_at"]


@FUZZ
@given(field=st.sampled_from([*SUBMISSION_FIELDS, "signature", "extra"]), value=json_values)
def test_registry_submissions_with_one_field_replaced(
    registry: tuple[str, Store, Identity], field: str, value: Any
) -> None:
    url, _, server = registry
    doc = make_submission(new_identity(), registry=server.public.fingerprint, vk_digest="e" * 64)
    doc[field] = value
    _check(HTTP.post(url + "/v1/entries", content=_dumps(doc)))


@FUZZ
@given(body=json_values.map(_dumps) | st.binary(max_size=300))
def test_registry_arbitrary_bodies(registry: tuple[str, Store, Identity], body: bytes) -> None:
    _check(HTTP.post(registry[0] + "/v1/entries", content=body))


@FUZZ
@given(
    path=st.sampled_from(["/v1/entries/", "/v1/entries", "/v1/head", "/v1/identity", "/"]),
    tail=st.text(max_size=30),
    query=st.dictionaries(
        st.sampled_from(["after", "limit", "vk_digest", "owner", "model_digest", "x"]), st.text(max_size=25)
    ),
)
def test_registry_arbitrary_paths(
    registry: tuple[str, Store, Identity], path: str, tail: str, query: dict[str, str]
) -> None:
    url = registry[0] + path + urllib.parse.quote(tail, safe="")
    _check(HTTP.get(url, params=query))


def _v2(data: Any = None) -> dict[str, Any]:
    data = [0.5] * 16 if data is None else data
    return {"inputs": [{"name": "images", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": data}]}


@FUZZ
@given(
    where=st.sampled_from(["name", "shape", "datatype", "data", "inputs", "outputs", "id", "parameters"]),
    value=json_values,
)
def test_model_requests_with_one_field_replaced(model: RunningServer, where: str, value: Any) -> None:
    body = _v2()
    if where in ("inputs", "outputs", "id", "parameters"):
        body[where] = value
    else:
        body["inputs"][0][where] = value
    _check(HTTP.post(model.url + "/v2/models/m/infer", content=_dumps(body)))


@FUZZ
@given(
    pixels=st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**30), 10**30) | st.booleans(),
        min_size=16,
        max_size=16,
    ),
    datatype=st.sampled_from(["FP32", "FP64", "FP16", "UINT8"]),
)
def test_model_arbitrary_pixels(model: RunningServer, pixels: list[Any], datatype: str) -> None:
    body = _v2(pixels)
    body["inputs"][0]["datatype"] = datatype
    _check(HTTP.post(model.url + "/v2/models/m/infer", content=_dumps(body)))
    _check(HTTP.post(model.url + "/predict/m", content=_dumps({"images": [[pixels[:4]] * 4]})))


@FUZZ
@given(body=json_values.map(_dumps) | st.binary(max_size=300), path=st.sampled_from(["infer", "predict"]))
def test_model_arbitrary_bodies(model: RunningServer, body: bytes, path: str) -> None:
    url = model.url + ("/v2/models/m/infer" if path == "infer" else "/predict/m")
    _check(HTTP.post(url, content=body))
