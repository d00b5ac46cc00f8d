"""The registry takes a sibling record's digest (issue 24): registered, looked up, audited, and documents
without it are byte for byte what they were before the field existed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Live
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from backmark.cli.main import main
from backmark.errors import BackmarkError
from backmark.identity import Identity, new_identity, sign_document
from backmark.infra.canonical_json import canonical_json
from backmark.ledger.audit import AuditReport, audit
from backmark.ledger.chain import (
    RECEIPT_SCHEMA,
    SUBMISSION_PURPOSE,
    Entry,
    check_receipt,
    check_submission,
    make_submission,
    next_entry,
)
from backmark.ledger.client import RegistryClient
from backmark.ledger.store import Store
from backmark.sibling_record import RECORD, SiblingRecord, choice_of, siblings_folder

OLD_SUBMISSION_KEYS = {
    "format",
    "version",
    "registry",
    "vk_digest",
    "model_digest",
    "nonce",
    "signed_at",
    "signature",
}
OLD_RECEIPT_KEYS = {
    "format",
    "version",
    "registry",
    "entry",
    "timestamp",
    "vk_digest",
    "model_digest",
    "owner",
    "submission_hash",
    "prev_hash",
    "entry_hash",
    "signature",
}


def _fixed_entry() -> tuple[dict[str, Any], Entry, Identity]:
    """A submission and its entry from fixed keys, nonce and times (Ed25519 signing is deterministic)."""
    owner = Identity(Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32))
    server = Identity(Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32))
    doc = {
        "format": "backmark-registration",
        "version": 1,
        "registry": server.public.fingerprint,
        "vk_digest": "ab" * 32,
        "model_digest": None,
        "nonce": "0" * 32,
        "signed_at": "2026-12-01T07:13:39.326781Z",
    }
    doc = sign_document(owner, doc, SUBMISSION_PURPOSE)
    submission = check_submission(doc, registry=server.public.fingerprint)
    entry = next_entry(
        submission, seq=7, timestamp="2026-12-01T07:13:40.000000Z", prev_hash="cd" * 32, server=server
    )
    return doc, entry, server


def sha(doc: Any) -> str:
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def test_documents_without_siblings_are_what_they_were() -> None:
    """The digests below were computed by the code before siblings_digest existed (commit 4a4d3e3)."""
    doc, entry, server = _fixed_entry()
    receipt = entry.receipt(server.public)
    assert set(receipt) == OLD_RECEIPT_KEYS and entry.siblings_digest is None
    assert sha(doc) == "44f0a59378a0611bb6d971543b6c2084549aebc6a273c5908fc4de1070f1c255"
    assert sha(receipt) == "af16fa0d9ea7d5295dd638757c5042d38774e687e94b1ff10ebd1e78f5d663ad"
    assert entry.entry_hash == "c7f4901eda648438a4bec05fd0929325cf6d32f14a77c99b3154fbcaee7c8f4e"
    assert sha(entry.to_json(server.public)) == (
        "7d05688b897ac76e0bf2846fa932a6eb0b7ead4deaf07b4e52147529f4db0a91"
    )
    check_receipt(receipt, server.public)
    assert Entry.from_json(entry.to_json(server.public)) == entry
    fresh = make_submission(new_identity(), registry="0" * 64, vk_digest="a" * 64)
    assert set(fresh) == OLD_SUBMISSION_KEYS


def test_a_siblings_digest_is_signed_into_the_submission_and_the_receipt() -> None:
    owner, server = new_identity(), new_identity()
    doc = make_submission(
        owner, registry=server.public.fingerprint, vk_digest="a" * 64, siblings_digest="e" * 64
    )
    assert set(doc) == OLD_SUBMISSION_KEYS | {"siblings_digest"}
    submission = check_submission(doc)
    assert submission.siblings_digest == "e" * 64
    entry = next_entry(
        submission, seq=1, timestamp="2026-12-01T07:13:40.000000Z", prev_hash="0" * 64, server=server
    )
    receipt = check_receipt(entry.receipt(server.public), server.public)
    assert receipt["siblings_digest"] == "e" * 64
    RECEIPT_SCHEMA.check(receipt)
    assert Entry.from_json(entry.to_json(server.public)) == entry
    with pytest.raises(BackmarkError, match="signature"):
        check_receipt({**receipt, "siblings_digest": "f" * 64}, server.public)
    with pytest.raises(BackmarkError, match="siblings_digest"):
        make_submission(owner, registry="0" * 64, vk_digest="a" * 64, siblings_digest="E" * 64)
    # an explicit null is a submission without siblings
    bare = {k: v for k, v in doc.items() if k != "signature"}
    assert check_submission(sign_document(owner, {**bare, "siblings_digest": None}, SUBMISSION_PURPOSE))
    assert (
        check_submission(
            sign_document(owner, {**bare, "siblings_digest": None}, SUBMISSION_PURPOSE)
        ).siblings_digest
        is None
    )


def _audit(store: Store, server: Identity) -> AuditReport:
    seq, digest, _ = store.head()
    return audit(store.scan(), server=server.public, head=(seq, digest))


def test_register_and_look_up_by_siblings_digest(live: Live) -> None:
    owner, other = new_identity(), new_identity()
    with RegistryClient(live.url) as client:
        plain = client.register(owner, vk_digest="1" * 64)  # an old-style submission
        assert "siblings_digest" not in plain
        first = client.register(owner, vk_digest="2" * 64, model_digest="3" * 64, siblings_digest="4" * 64)
        second = client.register(other, vk_digest="5" * 64, siblings_digest="4" * 64)
        client.register(other, vk_digest="6" * 64, siblings_digest="7" * 64)
        assert first["siblings_digest"] == "4" * 64 and first["model_digest"] == "3" * 64
        found = client.lookup(siblings_digest="4" * 64)
        assert [e["entry"] for e in found] == [first["entry"], second["entry"]] == [2, 3]
        assert all(e["siblings_digest"] == "4" * 64 for e in found)
        assert found[0]["receipt"] == first
        assert client.lookup(siblings_digest="8" * 64) == []
        assert [e["entry"] for e in client.lookup(owner=owner.public.fingerprint)] == [1, 2]
        [old] = client.lookup(vk_digest="1" * 64)
        assert "siblings_digest" not in old and "siblings_digest" not in old["receipt"]
        entries = [Entry.from_json(doc) for doc in client.entries(check=False)]
        head = client.head()
    assert [e.siblings_digest for e in entries] == [None, "4" * 64, "4" * 64, "7" * 64]
    assert live.store.entries(siblings_digest="7" * 64)[0].vk_digest == "6" * 64
    assert _audit(live.store, live.server).ok
    remote = audit(entries, server=live.server.public, head=head, receipts=[plain, first, second])
    assert remote.ok and remote.entries == 4


TAMPERS = {
    "set on an entry without one": ("UPDATE registry_entries SET siblings_digest = :v WHERE seq = 1", 1),
    "changed": ("UPDATE registry_entries SET siblings_digest = :v WHERE seq = 2", 2),
    "removed": ("UPDATE registry_entries SET siblings_digest = NULL WHERE seq = 2", 2),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_a_tampered_siblings_digest_is_caught(db_url: str, server_id: Identity, tamper: str) -> None:
    store = Store(db_url)
    try:
        store.init(server_id.public)
        for i, siblings in enumerate((None, "4" * 64, None)):
            doc = make_submission(
                new_identity(),
                registry=server_id.public.fingerprint,
                vk_digest=f"{i + 1:064x}",
                siblings_digest=siblings,
            )
            store.append(check_submission(doc), server=server_id, now=lambda: datetime.now(UTC))
        assert _audit(store, server_id).ok
        statement, first_bad = TAMPERS[tamper]
        with store.engine.begin() as conn:
            conn.execute(text(statement), {"v": "f" * 64})
        report = _audit(store, server_id)
        assert not report.ok and report.first_bad == first_bad
        assert "siblings_digest" in str(report.reason) and "differs from what the owner signed" in str(
            report.reason
        )
    finally:
        store.close()


def test_a_database_made_before_the_column_gets_it(db_url: str, server_id: Identity) -> None:
    """An older database (no siblings_digest column) is opened, keeps auditing clean, and takes one."""
    store = Store(db_url)
    try:
        store.init(server_id.public)
        doc = make_submission(new_identity(), registry=server_id.public.fingerprint, vk_digest="1" * 64)
        store.append(check_submission(doc), server=server_id, now=lambda: datetime.now(UTC))
        with store.engine.begin() as conn:  # what an older backmark made
            conn.execute(text("DROP INDEX ix_registry_entries_siblings_digest"))
            conn.execute(text("ALTER TABLE registry_entries DROP COLUMN siblings_digest"))
    finally:
        store.close()
    store = Store(db_url)  # as `backmark registry audit --db` opens it: read as it is, not changed
    try:
        assert _audit(store, server_id).ok and store.entries(siblings_digest="9" * 64) == []
        assert "siblings_digest" not in store._columns()
    finally:
        store.close()
    assert main(["registry", "audit", "--db", db_url]) == 0
    for _ in range(2):  # the second init finds the column there
        store = Store(db_url)
        try:
            store.init(server_id.public)
            assert _audit(store, server_id).ok
        finally:
            store.close()
    store = Store(db_url)
    try:
        store.init(server_id.public)
        doc = make_submission(
            new_identity(),
            registry=server_id.public.fingerprint,
            vk_digest="2" * 64,
            siblings_digest="9" * 64,
        )
        store.append(check_submission(doc), server=server_id, now=lambda: datetime.now(UTC))
        assert [e.seq for e in store.entries(siblings_digest="9" * 64)] == [2]
        assert _audit(store, server_id).ok
    finally:
        store.close()


def write_record(out: Path, *, models: int = 3) -> SiblingRecord:
    """A sibling record for ``out`` (``OUT.siblings/siblings.json``) without models or torch."""
    salt = bytes(range(32))
    record = SiblingRecord(
        seeds=tuple(range(models)),
        weights=tuple(f"{i:064x}" for i in range(models)),
        deployed=choice_of(salt, models),
        salt=salt,
        recipe_json='{"epochs":1}',
        created="2026-12-06T01:00:00+00:00",
    )
    folder = siblings_folder(out)
    folder.mkdir(parents=True)
    (folder / RECORD).write_text(json.dumps(record.doc(), indent=1, sort_keys=True) + "\n")
    return record


def vk_file(path: Path, n: int) -> str:
    """A verification-key file (any JSON with a digest of the rest will do for the registry): its path."""
    vk: dict[str, Any] = {"format": "backmark-verification-key", "n": n}
    vk["digest"] = hashlib.sha256(canonical_json(vk)).hexdigest()
    path.write_text(json.dumps(vk))
    return str(path)


@pytest.fixture
def owner(tmp_path: Path, identity_dir: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> str:
    """The owner's identity folder, with the test working in ``tmp_path`` (where receipts are saved)."""
    monkeypatch.chdir(tmp_path)
    return str(identity_dir("owner"))


def test_cli_registers_and_looks_up_a_sibling_record(
    live: Live, tmp_path: Path, owner: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record = write_record(tmp_path / "marked.pt")
    vks = [vk_file(tmp_path / f"vk{i}.json", i) for i in range(3)]
    base = ["register", "--registry", live.url, "--identity", owner]

    assert main([*base, "--vk", vks[0], "--siblings", str(tmp_path / "marked.pt"), "--out", "r0.json"]) == 0
    out = capsys.readouterr().out
    assert f"sibling record {record.digest}" in out and "as entry 1" in out
    assert json.loads(Path("r0.json").read_text())["siblings_digest"] == record.digest
    folder = str(siblings_folder(tmp_path / "marked.pt"))
    assert main([*base, "--vk", vks[1], "--siblings", folder, "--out", "r1.json", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["siblings_digest"] == record.digest and shown["saved"] == "r1.json"
    argv = [*base, "--vk", vks[2], "--siblings-digest", record.digest, "--out", "r2.json", "-q"]
    assert main(argv) == 0 and capsys.readouterr().out == ""

    lookup = ["registry", "lookup", "--registry", live.url]
    assert main([*lookup, "--siblings", str(tmp_path / "marked.pt"), "--json"]) == 0
    assert [e["entry"] for e in json.loads(capsys.readouterr().out)] == [1, 2, 3]
    assert main([*lookup, "--siblings-digest", record.digest]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(f"siblings {record.digest[:16]}" in line for line in lines)
    assert main([*lookup, "--siblings-digest", "0" * 64]) == 0
    assert capsys.readouterr().out.strip() == "no registrations found"
    assert main(["registry", "audit", "--registry", live.url, "--receipt", "r0.json", "r1.json"]) == 0


def test_cli_sibling_errors_are_one_line(
    live: Live, tmp_path: Path, owner: str, capsys: pytest.CaptureFixture[str]
) -> None:
    vk_file(tmp_path / "vk.json", 0)
    record = write_record(tmp_path / "marked.pt")
    changed = tmp_path / "changed.pt"
    write_record(changed)
    path = siblings_folder(changed) / RECORD
    doc = json.loads(path.read_text())
    doc["deployed"] = (doc["deployed"] + 1) % 3
    path.write_text(json.dumps(doc))
    broken = tmp_path / "broken.pt"
    siblings_folder(broken).mkdir()
    (siblings_folder(broken) / RECORD).write_text("{")
    base = ["register", "--registry", live.url, "--identity", owner, "--vk", "vk.json"]
    cases = [
        ([*base, "--siblings", str(tmp_path / "none.pt")], "no sibling record"),
        ([*base, "--siblings", str(changed)], "digest does not match"),
        ([*base, "--siblings", str(broken)], "unreadable JSON"),
        ([*base, "--siblings-digest", "XYZ"], "--siblings-digest must be 64 lower-case hex digits"),
        ([*base, "--siblings-digest", record.digest.upper()], "--siblings-digest must be 64"),
        (["registry", "lookup", "--registry", live.url, "--siblings-digest", "xyz"], "400 siblings_digest"),
        (["registry", "lookup", "--registry", live.url, "--siblings", str(changed)], "digest does not"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("backmark: error: ") and err.count("\n") == 1 and message in err, err
    with pytest.raises(SystemExit) as exit_:  # the two ways to give a record exclude each other
        main([*base, "--siblings", str(tmp_path / "marked.pt"), "--siblings-digest", record.digest])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert live.store.entries() == []
