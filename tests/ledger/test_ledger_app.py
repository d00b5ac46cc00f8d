"""The registry's HTTP API on SQLite and PostgreSQL: registration, lookup, and every refusal."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import Live, TempPostgres

from backmark.errors import BackmarkError
from backmark.identity import Identity, new_identity, sign_document
from backmark.infra.asgi import serving
from backmark.ledger.app import MAX_BODY_BYTES, create_app
from backmark.ledger.audit import audit
from backmark.ledger.chain import SUBMISSION_PURPOSE, check_receipt, make_submission
from backmark.ledger.client import RegistryClient, lookup, register
from backmark.ledger.store import Store

VK_A, VK_B, MODEL = "a" * 64, "b" * 64, "c" * 64


def post(live: Live, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
    if content is None:
        content = json.dumps(body).encode()
    return httpx.post(
        f"{live.url}/v1/entries", content=content, headers={"content-type": "application/json"}, timeout=10
    )


def submission(live: Live, owner: Identity, vk: str = VK_A, **kw: Any) -> dict[str, Any]:
    return make_submission(owner, registry=live.server.public.fingerprint, vk_digest=vk, **kw)


def audit_live(live: Live) -> Any:
    seq, digest, _ = live.store.head()
    return audit(live.store.scan(), server=live.server.public, head=(seq, digest))


def test_register_returns_a_signed_receipt_and_lookup_finds_it(live: Live, owner: Identity) -> None:
    receipt = register(live.url, owner, VK_A, model_digest=MODEL)
    assert check_receipt(receipt, live.server.public) is receipt
    assert (receipt["entry"], receipt["vk_digest"], receipt["owner"]) == (1, VK_A, owner.public.fingerprint)
    assert receipt["model_digest"] == MODEL and receipt["prev_hash"] == "0" * 64
    second = register(live.url, new_identity(), VK_B)
    assert second["entry"] == 2 and second["prev_hash"] == receipt["entry_hash"]
    assert second["timestamp"] >= receipt["timestamp"]
    [found] = lookup(live.url, vk_digest=VK_A)
    assert (
        found["receipt"] == receipt
        and found["submission"]["signature"]["fingerprint"] == owner.public.fingerprint
    )
    assert [e["entry"] for e in lookup(live.url, model_digest=MODEL)] == [1]
    assert lookup(live.url, owner=owner.public.fingerprint)[0]["entry"] == 1
    assert lookup(live.url, vk_digest="d" * 64) == []
    assert audit_live(live).ok


def test_a_thief_registering_the_same_key_later_is_recorded_after_the_owner(
    live: Live, owner: Identity
) -> None:
    thief = new_identity()
    first = register(live.url, owner, VK_A)
    later = register(live.url, thief, VK_A)
    found = lookup(live.url, vk_digest=VK_A)
    assert [e["owner"] for e in found] == [owner.public.fingerprint, thief.public.fingerprint]
    assert first["entry"] < later["entry"] and first["timestamp"] <= later["timestamp"]


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda live, owner: b"{not json", 400, "malformed"),
        (lambda live, owner: b"[1, 2]", 400, "malformed"),
        (lambda live, owner: json.dumps({"format": "backmark-registration"}).encode(), 400, "malformed"),
        (
            lambda live, owner: json.dumps(
                {k: v for k, v in submission(live, owner).items() if k != "signature"}
            ).encode(),
            400,
            "unsigned",
        ),
        (
            lambda live, owner: json.dumps({**submission(live, owner), "vk_digest": VK_B}).encode(),
            403,
            "bad-signature",
        ),
        (
            lambda live, owner: json.dumps(
                sign_document(
                    owner,
                    {k: v for k, v in submission(live, owner).items() if k != "signature"},
                    "registry-receipt",
                )
            ).encode(),
            403,
            "bad-signature",
        ),
        (
            lambda live, owner: json.dumps(
                make_submission(owner, registry=new_identity().public.fingerprint, vk_digest=VK_A)
            ).encode(),
            400,
            "wrong-registry",
        ),
        (
            lambda live, owner: json.dumps(
                submission(live, owner, signed_at=datetime.now(UTC) - timedelta(hours=1))
            ).encode(),
            422,
            "stale",
        ),
        (lambda live, owner: b" " * (MAX_BODY_BYTES + 1), 413, "too-large"),
    ],
    ids=[
        "not-json",
        "not-object",
        "fields",
        "unsigned",
        "wrong-signature",
        "wrong-purpose",
        "other-registry",
        "stale",
        "too-large",
    ],
)
def test_bad_submissions_get_their_status_and_one_line(
    live: Live, owner: Identity, make: Any, status: int, code: str
) -> None:
    kept = register(live.url, new_identity(), VK_B)
    answer = post(live, content=make(live, owner))
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code and "\n" not in body["error"] and body["error"]
    assert [e.seq for e in live.store.entries()] == [kept["entry"]]
    assert audit_live(live).ok


def test_replay_and_duplicate_are_refused_with_409(live: Live, owner: Identity) -> None:
    doc = submission(live, owner)
    first = post(live, doc)
    assert first.status_code == 201
    replay = post(live, doc)
    assert replay.status_code == 409 and replay.json()["code"] == "replay"
    assert replay.json()["entry"]["entry"] == 1 and replay.json()["entry"]["submission"] == doc
    again = post(live, submission(live, owner))  # freshly signed, same key, same identity
    assert again.status_code == 409 and again.json()["code"] == "duplicate"
    assert "already registered by identity" in again.json()["error"]
    with pytest.raises(BackmarkError, match="already registered"):
        register(live.url, owner, VK_A)
    assert len(live.store.entries()) == 1 and audit_live(live).ok


def test_listing_pages_and_query_errors(live: Live) -> None:
    owners = [new_identity() for _ in range(5)]
    for i, who in enumerate(owners):
        register(live.url, who, f"{i:064x}")
    page = httpx.get(f"{live.url}/v1/entries", params={"limit": 2, "after": 1}, timeout=10).json()
    assert [e["entry"] for e in page["entries"]] == [2, 3] and page["next_after"] == 3
    assert httpx.get(f"{live.url}/v1/entries/4", timeout=10).json()["entry"] == 4
    assert httpx.get(f"{live.url}/v1/entries/9", timeout=10).status_code == 404
    bad = httpx.get(f"{live.url}/v1/entries", params={"vk_digest": "xyz"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["code"] == "malformed"
    with RegistryClient(live.url) as client:
        assert len(client.entries()) == 5 and client.head()[0] == 5


def test_a_receipt_is_checked_against_the_server_identity(live: Live, owner: Identity) -> None:
    receipt = register(live.url, owner, VK_A)
    with pytest.raises(BackmarkError, match="signed by"):
        check_receipt(receipt, new_identity().public)
    with pytest.raises(BackmarkError, match="does not match its content"):
        check_receipt({**receipt, "entry": 7}, live.server.public)
    forged = sign_document(owner, {k: v for k, v in receipt.items() if k != "signature"}, "registry-receipt")
    with pytest.raises(BackmarkError, match="signed by"):
        check_receipt(forged, live.server.public)
    assert SUBMISSION_PURPOSE != "registry-receipt"


def _read_only_url(live: Live) -> str:
    if live.db_url.startswith("sqlite"):
        return f"sqlite:///file:{live.db_url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    return live.db_url


def test_a_read_only_database_answers_503_and_loses_nothing(
    live: Live, owner: Identity, request: pytest.FixtureRequest
) -> None:
    kept = register(live.url, owner, VK_A)
    if live.db_url.startswith("postgresql"):
        pg: TempPostgres = request.getfixturevalue("postgres")
        name = live.db_url.rsplit("/", 1)[1]
        pg.admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    store = Store(_read_only_url(live), lock_timeout=2.0)
    store.init(live.server.public)  # a complete database is only read
    try:
        with serving(create_app(store, live.server)) as url:
            answer = httpx.post(f"{url}/v1/entries", json=submission(live, new_identity(), VK_B), timeout=10)
            assert answer.status_code == 503 and answer.json()["code"] == "database-unavailable"
            assert "read" in answer.json()["error"].lower() and answer.headers["retry-after"] == "1"
            assert [e["entry"] for e in lookup(url, vk_digest=VK_A)] == [kept["entry"]]
    finally:
        store.close()
    assert audit_live(live).ok and len(live.store.entries()) == 1


def test_a_locked_sqlite_database_answers_503_within_the_lock_timeout(
    tmp_path: Any, server_id: Identity
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url, lock_timeout=0.5)
    store.init(server_id.public)
    blocker = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    try:
        with serving(create_app(store, server_id)) as served:
            blocker.execute("BEGIN EXCLUSIVE")
            doc = make_submission(new_identity(), registry=server_id.public.fingerprint, vk_digest=VK_A)
            answer = httpx.post(f"{served}/v1/entries", json=doc, timeout=10)
            assert answer.status_code == 503 and "locked" in answer.json()["error"]
            blocker.execute("ROLLBACK")
            assert httpx.post(f"{served}/v1/entries", json=doc, timeout=10).status_code == 201
    finally:
        blocker.close()
        store.close()


def test_an_unreachable_postgresql_database_answers_503(postgres: TempPostgres, server_id: Identity) -> None:
    url = postgres.create_database()
    store = Store(url, lock_timeout=2.0)
    store.init(server_id.public)
    try:
        with serving(create_app(store, server_id)) as served:
            doc = make_submission(new_identity(), registry=server_id.public.fingerprint, vk_digest=VK_A)
            assert httpx.post(f"{served}/v1/entries", json=doc, timeout=10).status_code == 201
            postgres.drop_database(url.rsplit("/", 1)[1])
            doc = make_submission(new_identity(), registry=server_id.public.fingerprint, vk_digest=VK_B)
            answer = httpx.post(f"{served}/v1/entries", json=doc, timeout=10)
            assert answer.status_code == 503 and answer.json()["code"] == "database-unavailable"
            assert "\n" not in answer.json()["error"]
            with pytest.raises(BackmarkError, match="did not answer"):
                RegistryClient(served, deadline=1.5).register(new_identity(), vk_digest=VK_B)
    finally:
        store.close()


def test_a_database_signed_by_another_server_is_refused(db_url: str, server_id: Identity) -> None:
    store = Store(db_url)
    try:
        store.init(server_id.public)
        store.init(server_id.public)  # a restart with the same identity is fine
        with pytest.raises(BackmarkError, match="serve it with the identity that made it"):
            store.init(new_identity().public)
    finally:
        store.close()


def test_bad_database_urls_are_one_line_errors() -> None:
    for url, message in [
        ("mysql://x/y", "SQLite or PostgreSQL"),
        ("nonsense", "not a database URL"),
        ("sqlite://", "must name a SQLite file"),
    ]:
        with pytest.raises(BackmarkError, match=message):
            Store(url)


def test_a_registration_whose_answer_was_lost_is_not_recorded_twice(
    live: Live, owner: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RegistryClient(live.url) as client:
        real = client._http.stream
        calls: list[str] = []

        @contextlib.contextmanager
        def lose_first_answer(method: str, url: str, **kw: Any) -> Iterator[httpx.Response]:
            with real(method, url, **kw) as answer:
                answer.read()
                calls.append(method)
                if method == "POST" and calls.count("POST") == 1:
                    raise httpx.ReadError("connection dropped after the server answered")
                yield answer

        monkeypatch.setattr(client._http, "stream", lose_first_answer)
        receipt = client.register(owner, vk_digest=VK_A)
    assert calls.count("POST") == 2 and receipt["entry"] == 1
    check_receipt(receipt, live.server.public)
    assert len(live.store.entries()) == 1 and audit_live(live).ok


def test_a_replay_answer_for_another_submission_is_not_taken_as_ours(
    live: Live, owner: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(live.url, new_identity(), VK_B)
    other = live.store.entries()[0]
    with RegistryClient(live.url) as client:
        client.server_identity()
        # request() retried (a try failed) and its final answer is a replay, of someone else's submission
        replay = {"error": "replay", "code": "replay", "entry": other.to_json(live.server.public)}
        monkeypatch.setattr(client, "request", lambda *a, **kw: (409, replay, True))
        with pytest.raises(BackmarkError, match="answered a replay of another submission"):
            client.register(owner, vk_digest=VK_A)
