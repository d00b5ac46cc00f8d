"""Owner identities: an Ed25519 key pair that signs verification keys, proofs and registry receipts.

An identity lives in a folder of its own (``backmark identity new --out IDDIR``)::

    IDDIR/identity.key        the private key, PKCS#8 PEM, unencrypted, mode 0600 (SECRET)
    IDDIR/identity.pub.json   the public half: {"format": "backmark-identity", "version": 1,
                              "algorithm": "ed25519", "public_key": base64 of the 32 raw bytes,
                              "fingerprint": SHA-256 of the 32 raw bytes, hex}

The pair is written as a pair (:func:`backmark.atomic.atomic_folder`) and never replaced without
``force``. Ed25519 comes from the ``cryptography`` package (pyca), the maintained binding to OpenSSL.

**Signed documents.** :func:`sign_document` adds a ``signature`` field to a JSON object:
``{"algorithm": "ed25519", "public_key": ..., "fingerprint": ..., "purpose": ..., "value": base64}``.
The signed bytes are ``b"backmark/v1/signature/" + purpose + b"\\0"`` followed by the canonical JSON
(``sort_keys``, no spaces) of the document without its ``signature`` field. The purpose (for example
``"registry-submission"``, ``"registry-receipt"``) is part of what is signed, so a signature made for
one kind of document can never pass as a signature of another kind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backmark.atomic import atomic_folder, sweep, write_bytes
from backmark.errors import BackmarkError
from backmark.infra.canonical_json import canonical_json
from backmark.infra.json_files import check_versioned, read_file, read_json
from backmark.infra.schema import HEX64, Const, Record, SchemaError, Text

ID_FORMAT = "backmark-identity"
ID_VERSION = 1
ALGORITHM = "ed25519"
PRIVATE_NAME = "identity.key"
PUBLIC_NAME = "identity.pub.json"
SIGNATURE_FIELD = "signature"
_DOMAIN = b"backmark/v1/signature/"
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NEW_HINT = "; make one with `backmark identity new --out DIR`"  # after "not found"

# Ed25519 (RFC 8032) over GF(P); L is the order of the base point's group.
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
# The y coordinates of the 8 points of small order (1, 2, 4, 8): the identity (y = 1), the point of
# order 2 (y = -1), those of order 4 (y = 0) and of order 8 (y = +-Y8). An Ed25519 key or a signature's R
# on one of them lets one signature pass for many messages (the identity key with R = identity, S = 0
# verifies for every message), and OpenSSL accepts them, so they are refused here.
_Y8 = 0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})


def _point_problem(encoded: bytes) -> str | None:
    """Why the 32-byte point encoding ``encoded`` is refused (non-canonical, small order), or None."""
    y = int.from_bytes(encoded, "little") & (2**255 - 1)
    if y >= _P:
        return "is not canonically encoded (y >= p)"
    if y in _SMALL_ORDER_Y:  # also the non-canonical -0 encodings of x = 0 (y = +-1)
        return "is a point of small order"
    return None


def verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """The one Ed25519 check in backmark: True only for a valid signature under a sound key.

    Refused before the signature is checked (RFC 8032's strict rules, which OpenSSL leaves out): a key or
    an R that is not a canonical encoding or is a point of small order, and an S that is not below L.
    Every signature backmark checks (registry submissions and receipts, proofs, claims, disputes,
    identity files) goes through here, via :meth:`PublicIdentity.verify`.
    """
    if len(public_key) != 32 or len(signature) != 64:
        return False
    if _point_problem(public_key) or _point_problem(signature[:32]):
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


_BASE64_32 = Text(r"[A-Za-z0-9+/]{43}=", 44, 44, "base64 of 32 bytes")
_BASE64_64 = Text(r"[A-Za-z0-9+/]{86}==", 88, 88, "base64 of 64 bytes")
# The declared forms of a public identity document and of a signature object; nothing else is read.
IDENTITY_SCHEMA = Record(
    {
        "format": Const(ID_FORMAT),
        "version": Const(ID_VERSION),
        "algorithm": Const(ALGORITHM),
        "public_key": _BASE64_32,
        "fingerprint": HEX64,
    }
)
SIGNATURE_SCHEMA = Record(
    {
        "algorithm": Const(ALGORITHM),
        "public_key": _BASE64_32,
        "fingerprint": HEX64,
        "purpose": Text(r"[a-z0-9][a-z0-9._-]{0,63}", 1, 64, "a short lower-case word"),
        "value": _BASE64_64,
    }
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise BackmarkError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise BackmarkError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class PublicIdentity:
    """The public half of an identity: checks signatures; ``fingerprint`` (64 hex) names it."""

    raw: bytes  # the 32 bytes of the Ed25519 public key

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise BackmarkError(f"an Ed25519 public key has 32 bytes, not {len(self.raw)}")
        problem = _point_problem(self.raw)
        if problem is not None:
            raise BackmarkError(f"the Ed25519 public key {problem}: it cannot be an identity")

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def short(self) -> str:
        """The first 16 hex digits of the fingerprint, for messages."""
        return self.fingerprint[:16]

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True if ``signature`` is this key's Ed25519 signature of ``data`` (:func:`verify_ed25519`)."""
        return verify_ed25519(self.raw, signature, data)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ID_FORMAT,
            "version": ID_VERSION,
            "algorithm": ALGORITHM,
            "public_key": _b64(self.raw),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, doc: Any, *, what: str = "public identity") -> PublicIdentity:
        """Read :meth:`to_json`'s form; a wrong format or a fingerprint that does not match is refused."""
        check_versioned(doc, what, format=ID_FORMAT, version=ID_VERSION, noun="identity")
        changed = f"{what} was changed: its fingerprint does not match its public key"
        return _named_key(doc, IDENTITY_SCHEMA, "", what=what, field="public_key", changed=changed)


def _named_key(
    doc: dict[str, Any], schema: Record, where: str, *, what: str, field: str, changed: str
) -> PublicIdentity:
    """The public key that ``doc`` carries beside its fingerprint (an identity file, a signature), after
    ``schema`` checks every field; ``changed`` is the error when the fingerprint is not the key's."""
    try:
        schema.check(doc, where)
    except SchemaError as exc:
        raise BackmarkError(f"{what}: {exc}") from None
    public = PublicIdentity(_unb64(doc.get("public_key"), f"{what}: {field}"))
    if doc.get("fingerprint") != public.fingerprint:
        raise BackmarkError(changed)
    return public


class Identity:
    """An owner's Ed25519 private key; :attr:`public` is what others see and check against."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public = PublicIdentity(raw)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __repr__(self) -> str:  # never the private key
        return f"Identity({self.public.short})"


def new_identity() -> Identity:
    """A fresh identity from the operating system's randomness."""
    return Identity(Ed25519PrivateKey.generate())


def save_identity(identity: Identity, directory: str | Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``directory/identity.key`` (0600) and ``directory/identity.pub.json`` as a pair.

    ``directory`` (0700) must be missing, empty or hold only identity files; those are replaced only with
    ``force``, both at once.
    """
    directory = Path(directory)
    private, public = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    sweep(directory)
    if not force:
        for path in (private, public):
            if path.exists():
                raise BackmarkError(
                    f"{path} already exists; pass {{force}} to replace the identity", params=["force"]
                )
    with atomic_folder(
        directory,
        force=force,
        owned={PRIVATE_NAME, PUBLIC_NAME}.__contains__,
        what="an identity",
        mode=0o700,
    ) as staging:
        write_bytes(staging / PRIVATE_NAME, identity.private_pem(), mode=0o600)
        text = json.dumps(identity.public.to_json(), indent=1) + "\n"
        write_bytes(staging / PUBLIC_NAME, text.encode(), mode=0o644)
    return private, public


def _public_from_file(path: Path) -> PublicIdentity:
    doc = read_json(path, "public identity", _NEW_HINT)
    return PublicIdentity.from_json(doc, what=f"public identity {path}")


def load_identity(path: str | Path) -> Identity:
    """The identity in folder ``path`` (or the private key file ``path``), checked against its public file."""
    path = Path(path)
    sweep(path)
    key_path = path / PRIVATE_NAME if path.is_dir() else path
    raw = read_file(key_path, "identity", _NEW_HINT)
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        raise BackmarkError(f"{key_path} is not an unencrypted PEM private key (damaged?)") from None
    except Exception:  # cryptography raises its own errors for unsupported algorithms
        raise BackmarkError(f"{key_path} is not a private key that backmark can read") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BackmarkError(f"{key_path} holds a {type(key).__name__}, not an Ed25519 identity key")
    identity = Identity(key)
    public_path = key_path.with_name(PUBLIC_NAME)
    if public_path.exists() and _public_from_file(public_path) != identity.public:
        raise BackmarkError(f"{public_path} is not the public half of {key_path}")
    return identity


def load_public_identity(path: str | Path) -> PublicIdentity:
    """The public identity in folder ``path`` or the public file ``path`` (never needs the private key)."""
    path = Path(path)
    if path.is_dir():
        path = path / PUBLIC_NAME
    return _public_from_file(path)


def _signed_bytes(doc: dict[str, Any], purpose: str) -> bytes:
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    return _DOMAIN + purpose.encode() + b"\0" + canonical_json(body)


def _check_purpose(purpose: str) -> None:
    if not isinstance(purpose, str) or not _PURPOSE.fullmatch(purpose):
        raise BackmarkError(f"signature purpose {purpose!r} must be a short lower-case word (a-z 0-9 . _ -)")


def sign_document(identity: Identity, doc: dict[str, Any], purpose: str) -> dict[str, Any]:
    """``doc`` with a ``signature`` field by ``identity`` for ``purpose`` (an old signature is replaced)."""
    _check_purpose(purpose)
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    value = identity.sign(_signed_bytes(body, purpose))
    signature = {
        "algorithm": ALGORITHM,
        "public_key": _b64(identity.public.raw),
        "fingerprint": identity.public.fingerprint,
        "purpose": purpose,
        "value": _b64(value),
    }
    return {**body, SIGNATURE_FIELD: signature}


def document_signer(doc: Any, *, what: str = "document") -> PublicIdentity:
    """The identity that ``doc`` claims signed it, without checking the signature."""
    signature = doc.get(SIGNATURE_FIELD) if isinstance(doc, dict) else None
    if not isinstance(signature, dict):
        raise BackmarkError(f"{what} is not signed (no {SIGNATURE_FIELD!r} object)")
    if signature.get("algorithm") != ALGORITHM:
        raise BackmarkError(
            f"{what} is signed with {str(signature.get('algorithm'))[:40]!r}, not {ALGORITHM}"
        )
    changed = f"{what}: the signature's fingerprint does not match its public key"
    return _named_key(
        signature, SIGNATURE_SCHEMA, "signature", what=what, field="signature public_key", changed=changed
    )


def check_document_signature(
    doc: Any, purpose: str, *, signer: PublicIdentity | None = None, what: str = "document"
) -> PublicIdentity:
    """The identity whose valid ``purpose`` signature ``doc`` carries; anything else is a BackmarkError.

    With ``signer`` the signature must also be that identity's.
    """
    _check_purpose(purpose)
    public = document_signer(doc, what=what)
    signature = doc[SIGNATURE_FIELD]
    if signature.get("purpose") != purpose:
        raise BackmarkError(f"{what} is signed for {signature.get('purpose')!r}, not for {purpose!r}")
    value = _unb64(signature.get("value"), f"{what}: signature value")
    if not public.verify(value, _signed_bytes(doc, purpose)):
        raise BackmarkError(f"{what}: the signature does not match its content (changed or forged)")
    if signer is not None and public != signer:
        raise BackmarkError(f"{what} is signed by {public.short}, not by the expected {signer.short}")
    return public


def is_hex_digest(value: Any) -> bool:
    """True for a SHA-256 hex digest in backmark's form (64 lower-case hex digits)."""
    return type(value) is str and _HEX64.fullmatch(value) is not None
