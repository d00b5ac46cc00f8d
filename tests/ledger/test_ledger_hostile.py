"""The registry against hostile requests (issue 21): forged signatures, inexact fields, requests that
once gave a 500, floods. Each gets its documented refusal with one line; nothing is recorded; the audit
stays clean; the server writes no traceback."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backmark.identity import Identity, new_identity, sign_document
from backmark.infra.asgi import start_server
from backmark.ledger.app import RateLimits, create_app
from backmark.ledger.audit import audit
from backmark.ledger.chain import SUBMISSION_PURPOSE, make_submission
from backmark.ledger.client import RegistryClient, register
from backmark.ledger.store import Store

# the 8 points of small order and two non-canonical encodings (tests/test_identity_ed25519.py has all)
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


class Reg:
    def __init__(self, url: str, store: Store, server: Identity) -> None:
        self.url, self.store, self.server = url, store, server

    def post(self, doc: Any = None, *, content: bytes | None = None) -> httpx.Response:
        body = content if content is not None else json.dumps(doc).encode()
        return httpx.post(f"{self.url}/v1/entries", content=body, timeout=10)

    def clean(self) -> bool:
        seq, digest, _ = self.store.head()
        return audit(self.store.scan(), server=self.server.public, head=(seq, digest)).ok


def _serve(tmp_path: Path, limits: RateLimits | None = None) -> Iterator[Reg]:
    server = new_identity()
    store = Store(f"sqlite:///{tmp_path / 'registry.db'}", lock_timeout=5.0)
    store.init(server.public)
    running = start_server(create_app(store, server, limits=limits))
    try:
        yield Reg(running.url, store, server)
    finally:
        running.stop()
        store.close()


@pytest.fixture
def reg(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> Iterator[Reg]:
    yield from _serve(tmp_path)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in ASGI" not in err, err[-2000:]


def _forged(reg: Reg, point: str) -> dict[str, Any]:
    """A submission "signed" by a small-order key with R = identity, S = 0 (OpenSSL accepts some)."""
    raw = bytes.fromhex(point)
    doc = make_submission(new_identity(), registry=reg.server.public.fingerprint, vk_digest="a" * 64)
    doc["signature"] = {
        **doc["signature"],
        "public_key": base64.b64encode(raw).decode(),
        "fingerprint": hashlib.sha256(raw).hexdigest(),
        "value": base64.b64encode(bytes.fromhex(SMALL_ORDER[0]) + bytes(32)).decode(),
    }
    return doc


def test_forged_signatures_of_small_order_keys_are_refused(reg: Reg) -> None:
    for point in SMALL_ORDER:
        answer = reg.post(_forged(reg, point))
        assert answer.status_code == 403, (point, answer.text)
        assert answer.json()["code"] == "bad-signature"
    assert reg.store.entries() == [] and reg.clean()


def _signed(reg: Reg, owner: Identity, **fields: Any) -> dict[str, Any]:
    """A submission with ``fields`` changed and then properly signed: only the field check can refuse it."""
    doc = make_submission(owner, registry=reg.server.public.fingerprint, vk_digest="b" * 64)
    doc = {**{k: v for k, v in doc.items() if k != "signature"}, **fields}
    return sign_document(owner, doc, SUBMISSION_PURPOSE)


INEXACT = {
    "vk_digest with a final newline": {"vk_digest": "b" * 64 + "\n"},
    "vk_digest upper-case": {"vk_digest": "B" * 64},
    "model_digest with a final newline": {"model_digest": "c" * 64 + "\n"},
    "siblings_digest with a final newline": {"siblings_digest": "d" * 64 + "\n"},
    "siblings_digest upper-case": {"siblings_digest": "D" * 64},
    "siblings_digest 63 digits": {"siblings_digest": "d" * 63},
    "siblings_digest not hex": {"siblings_digest": "g" * 64},
    "siblings_digest a number": {"siblings_digest": 1},
    "siblings_digest a list": {"siblings_digest": ["d" * 64]},
    "siblings_digest empty": {"siblings_digest": ""},
    "version true": {"version": True},
    "version 1.0": {"version": 1.0},
    "nonce not hex": {"nonce": "z" * 32},
    "nonce too long": {"nonce": "a" * 128},
    "registry with a final newline": {"registry": None},  # filled in below
    "signed_at with a final newline": {"signed_at": None},
    "an extra field": {"extra": 1},
}


@pytest.mark.parametrize("name", sorted(INEXACT))
def test_every_field_is_checked_exactly(reg: Reg, name: str) -> None:
    owner = new_identity()
    fields = dict(INEXACT[name])
    if "registry" in fields:
        fields["registry"] = reg.server.public.fingerprint + "\n"
    if "signed_at" in fields:
        fields["signed_at"] = (
            make_submission(owner, registry="0" * 64, vk_digest="0" * 64)["signed_at"] + "\n"
        )
    answer = reg.post(_signed(reg, owner, **fields))
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "malformed" and "\n" not in answer.json()["error"]
    assert reg.store.entries() == []


def test_the_same_key_cannot_be_registered_twice_by_a_trailing_newline(reg: Reg) -> None:
    owner = new_identity()
    assert reg.post(_signed(reg, owner)).status_code == 201
    assert reg.post(_signed(reg, owner, vk_digest="b" * 64 + "\n")).status_code == 400
    assert reg.post(_signed(reg, owner)).json()["code"] == "duplicate"
    assert len(reg.store.entries()) == 1 and reg.clean()


BAD_REQUESTS = [
    ("POST", "/v1/entries", "[" * 2000 + "]" * 2000, 400),
    ("POST", "/v1/entries", '{"version": NaN}', 400),
    ("POST", "/v1/entries", '{"a": ' + "9" * 5000 + "}", 400),
    ("POST", "/v1/entries", b"\xff\xfe", 400),
    ("GET", "/v1/entries/99999999999999999999", None, 400),
    ("GET", "/v1/entries/9999999999999999999", None, 404),
    ("GET", "/v1/entries/0", None, 404),
    ("GET", "/v1/entries/-1", None, 400),
    ("GET", "/v1/entries/1e3", None, 400),
    ("GET", "/v1/entries?after=1e400", None, 400),
    ("GET", "/v1/entries?after=99999999999999999999", None, 400),
    ("GET", "/v1/entries?limit=%2B5", None, 400),
    ("GET", "/v1/entries?nonsense=1", None, 400),
    ("GET", "/v1/entries?vk_digest=" + "a" * 64 + "%0A", None, 400),
    ("GET", "/v1/entries?siblings_digest=" + "a" * 64 + "%0A", None, 400),
    ("GET", "/v1/entries?siblings_digest=" + "A" * 64, None, 400),
    ("GET", "/v1/entries?siblings_digest=xyz", None, 400),
    ("GET", "/v1/entries?siblings_digest=", None, 400),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_REQUESTS)
def test_requests_that_once_gave_a_500(reg: Reg, method: str, path: str, body: Any, status: int) -> None:
    content = body.encode() if isinstance(body, str) else body
    answer = httpx.request(method, reg.url + path, content=content, timeout=10)
    assert answer.status_code == status, answer.text
    assert "\n" not in answer.json()["error"]


def test_each_client_is_rate_limited_and_the_client_waits_its_turn(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for live in _serve(tmp_path, RateLimits(reads=100, read_burst=100, writes=2, write_burst=2)):
        owner = new_identity()
        first = [live.post(_signed(live, owner, vk_digest=f"{i:064x}")).status_code for i in range(3)]
        assert first[:2] == [201, 201] and first[2] == 429
        limited = live.post(_signed(live, owner, vk_digest=f"{9:064x}"))
        assert limited.json()["code"] == "rate-limited" and int(limited.headers["Retry-After"]) >= 1
        start = time.monotonic()
        receipt = register(live.url, owner, f"{7:064x}", deadline=10)  # retried after Retry-After
        assert receipt["entry"] == 3 and time.monotonic() - start < 5
        assert live.clean()
    assert "Traceback" not in capfd.readouterr().err


def test_reads_are_rate_limited_too(tmp_path: Path) -> None:
    for live in _serve(tmp_path, RateLimits(reads=1, read_burst=5, writes=1, write_burst=1)):
        statuses = [httpx.get(live.url + "/v1/head", timeout=10).status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        with RegistryClient(live.url, deadline=10) as client:
            assert client.head()[0] == 0  # waits for its turn within the deadline


def test_the_rate_limit_is_per_forwarded_address_from_a_local_proxy(tmp_path: Path) -> None:
    """Behind a proxy on this machine, X-Forwarded-For names the client (uvicorn trusts 127.0.0.1)."""
    for live in _serve(tmp_path, RateLimits(reads=1, read_burst=2, writes=1, write_burst=1)):

        def head(client: str, url: str = live.url) -> httpx.Response:
            return httpx.get(url + "/v1/head", headers={"X-Forwarded-For": client}, timeout=10)

        assert [head("192.0.2.1").status_code for _ in range(3)] == [200, 200, 429]
        assert "192.0.2.1" in head("192.0.2.1").json()["error"]
        assert head("192.0.2.2").status_code == 200  # another client has its own bucket
