"""Owner identities: files, permissions, damage, and signed documents that cannot change purpose."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from backmark.errors import BackmarkError
from backmark.identity import (
    PRIVATE_NAME,
    PUBLIC_NAME,
    PublicIdentity,
    check_document_signature,
    load_identity,
    load_public_identity,
    new_identity,
    save_identity,
    sign_document,
)


def test_saved_identity_loads_back_with_private_half_0600(tmp_path: Path) -> None:
    identity = new_identity()
    private, public = save_identity(identity, tmp_path / "id")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "id").stat().st_mode) == 0o700
    assert load_identity(tmp_path / "id").public == identity.public
    assert load_identity(private).public == identity.public
    assert load_public_identity(tmp_path / "id") == identity.public
    assert load_public_identity(public) == identity.public
    doc = json.loads(public.read_text())
    assert doc["fingerprint"] == identity.public.fingerprint and len(doc["fingerprint"]) == 64
    assert PublicIdentity.from_json(doc) == identity.public
    assert "PRIVATE" not in repr(identity)


def test_an_identity_is_not_overwritten_without_force(tmp_path: Path) -> None:
    first = new_identity()
    save_identity(first, tmp_path / "id")
    with pytest.raises(BackmarkError, match="already exists; pass force=True"):
        save_identity(new_identity(), tmp_path / "id")
    assert load_identity(tmp_path / "id").public == first.public
    second = new_identity()
    save_identity(second, tmp_path / "id", force=True)
    assert load_identity(tmp_path / "id").public == second.public


def test_a_folder_with_other_files_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "id").mkdir()
    (tmp_path / "id" / "notes.txt").write_text("mine")
    with pytest.raises(BackmarkError, match="holds files other than an identity"):
        save_identity(new_identity(), tmp_path / "id", force=True)
    assert (tmp_path / "id" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (PRIVATE_NAME, b"not a key", "not an unencrypted PEM private key"),
        (PUBLIC_NAME, b"{", "not valid JSON"),
        (PUBLIC_NAME, b'{"format": "other"}', "not a backmark identity"),
    ],
)
def test_damaged_files_are_one_line_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    save_identity(new_identity(), tmp_path / "id")
    (tmp_path / "id" / name).write_bytes(content)
    with pytest.raises(BackmarkError, match=message) as err:
        load_identity(tmp_path / "id")
    assert "\n" not in str(err.value)


def test_a_public_file_of_another_identity_is_refused(tmp_path: Path) -> None:
    save_identity(new_identity(), tmp_path / "a")
    save_identity(new_identity(), tmp_path / "b")
    (tmp_path / "a" / PUBLIC_NAME).write_bytes((tmp_path / "b" / PUBLIC_NAME).read_bytes())
    with pytest.raises(BackmarkError, match="is not the public half"):
        load_identity(tmp_path / "a")


def test_an_edited_fingerprint_is_refused(tmp_path: Path) -> None:
    save_identity(new_identity(), tmp_path / "id")
    path = tmp_path / "id" / PUBLIC_NAME
    doc = json.loads(path.read_text())
    doc["fingerprint"] = "0" * 64
    path.write_text(json.dumps(doc))
    with pytest.raises(BackmarkError, match="fingerprint does not match"):
        load_public_identity(path)


def test_a_missing_identity_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(BackmarkError, match="backmark identity new"):
        load_identity(tmp_path / "none")


def test_signed_documents_check_and_any_change_is_caught() -> None:
    owner = new_identity()
    doc = sign_document(owner, {"vk_digest": "ab" * 32, "n": 3, "nested": {"x": [1, 2]}}, "vk")
    assert check_document_signature(doc, "vk") == owner.public
    assert check_document_signature(doc, "vk", signer=owner.public) == owner.public
    assert owner.public.verify(
        base64.b64decode(doc["signature"]["value"]),
        b"backmark/v1/signature/vk\0"
        + json.dumps(
            {k: v for k, v in doc.items() if k != "signature"}, sort_keys=True, separators=(",", ":")
        ).encode(),
    )
    for change in ({"n": 4}, {"nested": {"x": [2, 1]}}, {"extra": True}):
        with pytest.raises(BackmarkError, match="does not match its content"):
            check_document_signature({**doc, **change}, "vk")
    with pytest.raises(BackmarkError, match="signed by"):
        check_document_signature(doc, "vk", signer=new_identity().public)


def test_a_signature_for_one_purpose_never_passes_for_another() -> None:
    owner = new_identity()
    doc = sign_document(owner, {"a": 1}, "registry-submission")
    with pytest.raises(BackmarkError, match="signed for 'registry-submission', not for 'registry-receipt'"):
        check_document_signature(doc, "registry-receipt")
    relabelled = {**doc, "signature": {**doc["signature"], "purpose": "registry-receipt"}}
    with pytest.raises(BackmarkError, match="does not match its content"):
        check_document_signature(relabelled, "registry-receipt")


def test_unsigned_or_forged_signer_is_refused() -> None:
    owner, thief = new_identity(), new_identity()
    with pytest.raises(BackmarkError, match="is not signed"):
        check_document_signature({"a": 1}, "vk")
    doc = sign_document(owner, {"a": 1}, "vk")
    claimed = {**doc, "signature": {**doc["signature"], "public_key": thief.public.to_json()["public_key"]}}
    with pytest.raises(BackmarkError, match="fingerprint does not match"):
        check_document_signature(claimed, "vk")
    claimed["signature"]["fingerprint"] = thief.public.fingerprint
    with pytest.raises(BackmarkError, match="does not match its content"):
        check_document_signature(claimed, "vk")
