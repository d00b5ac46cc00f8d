"""Key files: a versioned binary marking key and a JSON verification key. Never pickle.

Marking key (``marking-key.bmk``), in the container of :mod:`backmark.infra.keyfile`::

    magic   b"BACKMARK-MK\\n"                  12 bytes
    hlen    uint32                            length of the header
    header  UTF-8 JSON                        metadata, labels, openings (hex), per-image SHA-256
    images  n*C*H*W bytes                     uint8 pixels, C order
    check   SHA-256 of everything above       32 bytes

It is written atomically (:mod:`backmark.atomic`: temporary file, fsync, rename) with mode 0600 and never
over an existing file unless asked. On load a checksum mismatch is located: the header, a named trigger
image, or the trailer.

A key pair lives in a folder of its own, and is replaced as a pair: :func:`save_key_pair` writes the new
pair into a hidden sibling folder and swaps it with the old folder in one step (see
:func:`backmark.atomic.atomic_folder`), so a crash at any instant leaves the old pair or the new pair,
never the new marking key beside the old verification key. Two renames inside the folder could not give
that. A folder holding anything besides the two key files is not replaced, since those files would go
with it. The loaders sweep what killed writers left beside the key (:func:`backmark.atomic.sweep`).

Verification key (``verification-key.json``): the fields of :meth:`VerificationKey.body` plus ``digest``,
which is recomputed on load, so a changed byte is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from backmark.atomic import atomic_folder, sweep, write_bytes
from backmark.errors import BackmarkError
from backmark.infra.json_files import read_file, read_json
from backmark.infra.keyfile import pack, unpack
from backmark.keys.commitments import ALGORITHM
from backmark.keys.derive import DERIVATION
from backmark.keys.model import VK_FORMAT, VK_VERSIONS, MarkingKey, Spend, VerificationKey

MK_MAGIC = b"BACKMARK-MK\n"
MK_FORMAT = "backmark-marking-key"
MK_VERSION = 2
MK_VERSIONS = (1, 2)  # 2 adds the derivation, the seed openings and the record of spent items
MK_NAME = "marking-key.bmk"
_KEYGEN_HINT = "; create one with `backmark keygen`"
VK_NAME = "verification-key.json"


def _mk_header(mk: MarkingKey) -> dict[str, Any]:
    return {
        "format": MK_FORMAT,
        "version": MK_VERSION,
        "n": mk.n,
        "num_classes": mk.num_classes,
        "input_shape": list(mk.input_shape),
        "kind": mk.kind,
        "created": mk.created,
        "master_seed": None if mk.master_seed is None else mk.master_seed.hex(),
        "source": dict(mk.source),
        "labels": [int(v) for v in mk.labels],
        "image_openings": [r.hex() for r in mk.image_openings],
        "label_openings": [s.hex() for s in mk.label_openings],
        "image_sha256": [hashlib.sha256(img.tobytes()).hexdigest() for img in mk.images],
        "vk_digest": mk.verification_key().digest,
        "derivation": mk.derivation,
        "seed_openings": [q.hex() for q in mk.seed_openings],
        "spent": [s.to_dict() for s in mk.spent],
    }


def marking_key_bytes(mk: MarkingKey) -> bytes:
    return pack(MK_MAGIC, _mk_header(mk), np.ascontiguousarray(mk.images).tobytes())


def save_marking_key(mk: MarkingKey, path: str | Path, *, force: bool = False) -> Path:
    return write_bytes(path, marking_key_bytes(mk), mode=0o600, force=force)


def save_verification_key(vk: VerificationKey, path: str | Path, *, force: bool = False) -> Path:
    doc = {**vk.body(), "digest": vk.digest}
    return write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode(), mode=0o644, force=force)


def save_key_pair(mk: MarkingKey, directory: str | Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``directory/marking-key.bmk`` (0600) and ``directory/verification-key.json``, as a pair.

    ``directory`` (mode 0700) must be missing, empty, or hold only key files; an existing key is replaced
    only with ``force``, and then atomically with its partner (see the module docstring).
    """
    directory = Path(directory)
    mk_path, vk_path = directory / MK_NAME, directory / VK_NAME
    _sweep_key(directory)
    if not force:
        for p in (mk_path, vk_path):
            if p.exists():
                raise BackmarkError(
                    f"{p} already exists; pass {{force}} to overwrite the key", params=["force"]
                )
    with atomic_folder(
        directory, force=force, owned={MK_NAME, VK_NAME}.__contains__, what="a key pair", mode=0o700
    ) as staging:
        save_marking_key(mk, staging / MK_NAME)
        save_verification_key(mk.verification_key(), staging / VK_NAME)
    return mk_path, vk_path


def _sweep_key(directory: Path) -> None:
    """Remove what killed writers left beside a key folder and its two files."""
    sweep(directory)
    sweep(directory / MK_NAME)
    sweep(directory / VK_NAME)


def _locate_damage(path: Path, raw: bytes, image_start: int, header: dict[str, Any] | None) -> str:
    """Name the part of a marking key whose checksum failed.

    The header lists a SHA-256 per image, so a changed image is found by its hash. A changed hash in the
    header looks the same, so before blaming an image the pixels are checked against the header's
    ``vk_digest``: if they still open the commitments, the images are intact and the header was changed.
    """
    prefix = f"marking key {path} is corrupt"
    if header is None:
        return f"{prefix}: its header is damaged"
    try:
        c, h, w = (int(v) for v in header["input_shape"])
        n, size = int(header["n"]), c * h * w
        hashes = list(header["image_sha256"])
        expected = image_start + n * size + 32
        if n < 0 or size <= 0 or len(hashes) != n:
            return f"{prefix}: its header is damaged"
        if len(raw) != expected:
            return (
                f"{prefix}: it is {len(raw)} bytes long but its header describes {expected} bytes "
                "(the file was truncated or extended, or its header is damaged)"
            )
        bad = [
            i
            for i, want in enumerate(hashes)
            if hashlib.sha256(raw[image_start + i * size : image_start + (i + 1) * size]).hexdigest() != want
        ]
    except (KeyError, TypeError, ValueError):
        return f"{prefix}: its header is damaged"
    if not bad:
        return f"{prefix}: its header or checksum was changed"
    try:
        rebuilt = _marking_key_from(header, raw[image_start : image_start + n * size])
        images_committed = rebuilt.verification_key().digest == header.get("vk_digest")
    except (BackmarkError, KeyError, TypeError, ValueError):
        images_committed = False
    if images_committed:
        return f"{prefix}: its header was changed (the stored hash of trigger image {bad[0]})"
    if len(bad) == 1:
        return f"{prefix}: trigger image {bad[0]} was changed"
    listed = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
    return f"{prefix}: trigger images {listed} were changed (or its header is damaged)"


def _key_file(path: str | Path, name: str) -> Path:
    """The key file ``name`` at ``path`` (a key folder or the file itself), after putting back a key
    folder that a crash left aside."""
    path = Path(path)
    _sweep_key(path.parent if path.is_file() else path)
    return path / name if path.is_dir() else path


def load_marking_key(path: str | Path) -> MarkingKey:
    """Read and integrity-check a marking key; any damage raises BackmarkError saying where."""
    path = _key_file(path, MK_NAME)
    raw = read_file(path, "marking key", _KEYGEN_HINT)
    header, pixels = unpack(
        raw,
        MK_MAGIC,
        path,
        "marking key",
        locate=lambda header, start: _locate_damage(path, raw, start, header),
    )
    if header.get("format") != MK_FORMAT or header.get("version") not in MK_VERSIONS:
        raise BackmarkError(
            f"{path} is marking key format {header.get('format')} v{header.get('version')}; "
            f"this backmark reads {MK_FORMAT} v1 and v{MK_VERSION}"
        )
    try:
        mk = _marking_key_from(header, pixels)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackmarkError(f"marking key {path} has a missing or bad field: {exc}") from None
    except BackmarkError as exc:  # the fields do not fit together
        raise BackmarkError(f"{exc} ({path})") from None
    if mk.verification_key().digest != header["vk_digest"]:
        raise BackmarkError(f"marking key {path} is inconsistent: its commitments do not match")
    return mk


def _marking_key_from(header: dict[str, Any], pixels: bytes) -> MarkingKey:
    c, h, w = (int(v) for v in header["input_shape"])
    n = int(header["n"])
    images = np.frombuffer(pixels, dtype=np.uint8)
    if images.size != n * c * h * w:
        raise ValueError("image data has the wrong length")
    seed = header.get("master_seed")
    return MarkingKey(
        images=images.reshape(n, c, h, w).copy(),
        labels=np.asarray(header["labels"], dtype=np.int64),
        num_classes=int(header["num_classes"]),
        image_openings=tuple(bytes.fromhex(r) for r in header["image_openings"]),
        label_openings=tuple(bytes.fromhex(s) for s in header["label_openings"]),
        kind=str(header["kind"]),
        created=str(header["created"]),
        master_seed=None if seed is None else bytes.fromhex(seed),
        source=MappingProxyType(dict(header.get("source", {}))),
        seed_openings=tuple(bytes.fromhex(q) for q in header.get("seed_openings", [])),
        derivation=header.get("derivation"),
        spent=tuple(Spend.from_dict(d) for d in header.get("spent", [])),
    )


def _hex_tuple(values: Any, field: str, path: str | Path) -> tuple[bytes, ...]:
    if not isinstance(values, list):
        raise BackmarkError(f"verification key {path}: field {field} must be a list")
    try:
        out = tuple(bytes.fromhex(v) for v in values)
    except (TypeError, ValueError):
        raise BackmarkError(f"verification key {path}: field {field} holds a non-hex value") from None
    if any(len(v) != 32 for v in out):
        raise BackmarkError(f"verification key {path}: field {field} holds a value of wrong length")
    return out


def load_verification_key(path: str | Path) -> VerificationKey:
    """Read a verification key and check its digest; a changed byte is refused."""
    path = _key_file(path, VK_NAME)
    return parse_verification_key(read_json(path, "verification key", _KEYGEN_HINT), path)


def parse_verification_key(doc: Any, path: str | Path) -> VerificationKey:
    """A verification key from its JSON document (``path`` names it in errors); its digest is checked."""
    if not isinstance(doc, dict) or doc.get("format") != VK_FORMAT:
        raise BackmarkError(f"{path} is not a backmark verification key")
    version = doc.get("version")
    if version not in VK_VERSIONS:
        raise BackmarkError(
            f"{path} is verification key v{version}; this backmark reads v"
            + " and v".join(map(str, VK_VERSIONS))
        )
    try:
        derivation = None
        seeds: tuple[bytes, ...] = ()
        if version == 2:
            derivation = str(doc["derivation"])
            seeds = _hex_tuple(doc["seed_commitments"], "seed_commitments", path)
        vk = VerificationKey(
            num_classes=int(doc["num_classes"]),
            input_shape=tuple(int(v) for v in doc["input_shape"]),  # type: ignore[arg-type]
            image_commitments=_hex_tuple(doc["image_commitments"], "image_commitments", path),
            label_commitments=_hex_tuple(doc["label_commitments"], "label_commitments", path),
            kind=str(doc["kind"]),
            created=str(doc["created"]),
            algorithm=str(doc["algorithm"]),
            seed_commitments=seeds,
            derivation=derivation,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BackmarkError(f"verification key {path} is missing or has a bad field: {exc}") from None
    if vk.n != doc.get("n") or len(vk.label_commitments) != vk.n or len(vk.input_shape) != 3:
        raise BackmarkError(f"verification key {path} is inconsistent: commitment counts differ")
    if vk.derivation is not None and len(vk.seed_commitments) != vk.n:
        raise BackmarkError(f"verification key {path} is inconsistent: commitment counts differ")
    if vk.null_classes < 2:  # a label must have at least two classes to be drawn from
        raise BackmarkError(
            f"verification key {path} is inconsistent: {vk.num_classes} classes are too few for a "
            f"{vk.kind} key"
        )
    if vk.derivation not in (None, DERIVATION):
        raise BackmarkError(
            f"verification key {path} uses derivation {vk.derivation!r}; this backmark knows {DERIVATION!r}"
        )
    if vk.algorithm != ALGORITHM:
        raise BackmarkError(
            f"verification key {path} uses commitment algorithm {vk.algorithm!r}; this backmark "
            f"supports {ALGORITHM!r}"
        )
    if vk.digest != doc.get("digest"):
        raise BackmarkError(f"verification key {path} was changed: its digest does not match")
    return vk
