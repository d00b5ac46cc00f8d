"""The owner's answer to a challenge: a proof that opens exactly the items the challenge selects.

File ``proof.json`` (format ``backmark-proof``, version 1)::

    {"format": "backmark-proof", "version": 1,
     "vk_digest": "<the verification key's digest>", "key_id": "...",
     "challenge": {...the whole challenge...}, "challenge_digest": "...",
     "size": L, "slot": j, "indices": [i, ...],      # sorted: slot j of size L (backmark.public.selection)
     "spent_before": [i, ...],                       # items the owner had opened before, sorted
     "num_classes": C, "input_shape": [c, h, w], "kind": "abstract", "derivation": "backmark-v2" | null,
     "openings": [{"index": i,
                   "seed": hex | null, "seed_opening": hex | null,     # null for keys without seeds
                   "image": "<base64 of the c*h*w uint8 pixels, C order>", "image_opening": hex,
                   "label": l, "label_opening": hex,
                   "classes": [c, ...]}, ...],                    # heldout and blend keys only: the
                                                     # true classes of the real images, which l avoids
     "created": "<time>",
     "digest": "<SHA-256 of the canonical JSON of every other field but the signature>",
     "signature": {...}}                             # optional: the owner's identity (prove --identity),
                                                     # purpose "proof", over everything else

Opening an item reveals it for good, so the marking key records it (:class:`backmark.keys.Spend`) *before*
the proof is written: a crash between the two loses at most those items, never opens one twice. Asked
again for the same challenge, :func:`prove` answers with the same items (no new spend), so a proof lost
to a crash can be made again. Two provers at once are serialised by a lock on the key folder.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from backmark.atomic import check_file, step, write_bytes
from backmark.errors import BackmarkError
from backmark.identity import Identity, check_document_signature, document_signer, sign_document
from backmark.infra.canonical_json import canonical_digest, frozen_json
from backmark.infra.json_files import check_versioned, read_json
from backmark.keys import (
    MarkingKey,
    VerificationKey,
    load_key_pair,
    resolve_key_paths,
    save_marking_key,
)
from backmark.keys.model import Spend
from backmark.public.challenge import Challenge, load_challenge, parse_challenge
from backmark.public.selection import select_slot, slot_count, slots_left

PROOF_FORMAT = "backmark-proof"
PROOF_VERSION = 1
PROOF_PURPOSE = "proof"


@dataclass(frozen=True)
class Opening:
    """One opened item: its seed (None for a key without seeds), image, label and commitment openings;
    for a ``heldout`` or ``blend`` key, ``classes``: the true classes of the real images it is made of (its
    seed commitment binds them, and its label avoids them)."""

    index: int
    seed: bytes | None
    seed_opening: bytes | None
    image: np.ndarray
    image_opening: bytes
    label: int
    label_opening: bytes
    classes: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        more = {} if self.classes is None else {"classes": list(self.classes)}
        return {
            "index": self.index,
            "seed": None if self.seed is None else self.seed.hex(),
            "seed_opening": None if self.seed_opening is None else self.seed_opening.hex(),
            "image": base64.b64encode(np.ascontiguousarray(self.image).tobytes()).decode(),
            "image_opening": self.image_opening.hex(),
            "label": self.label,
            "label_opening": self.label_opening.hex(),
            **more,
        }


@dataclass(frozen=True)
class Proof:
    """A parsed proof; ``text`` is the document as written, as JSON (its ``digest`` checked on load)."""

    text: str
    openings: tuple[Opening, ...]

    @classmethod
    def of(cls, doc: dict[str, Any], openings: tuple[Opening, ...]) -> Proof:
        return cls(frozen_json(doc), openings)

    @property
    def doc(self) -> dict[str, Any]:
        """The document: a fresh dict at every call, so the proof itself never changes."""
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed

    @property
    def vk_digest(self) -> str:
        return str(self.doc["vk_digest"])

    @property
    def challenge(self) -> Challenge:
        return parse_challenge(self.doc["challenge"], "the proof's challenge")

    @property
    def size(self) -> int:
        return int(self.doc["size"])

    @property
    def slot(self) -> int:
        return int(self.doc["slot"])

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.doc["indices"])

    @property
    def spent_before(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.doc["spent_before"])

    @property
    def digest(self) -> str:
        return str(self.doc["digest"])

    @property
    def signer(self) -> str | None:
        """The fingerprint of the identity that signed the proof (checked on load), or None."""
        if "signature" not in self.doc:
            return None
        return document_signer(self.doc, what="the proof").fingerprint


def sign_proof(proof: Proof, identity: Identity) -> Proof:
    """``proof`` signed by the owner's ``identity`` (purpose ``proof``)."""
    return Proof.of(sign_document(identity, proof.doc, PROOF_PURPOSE), proof.openings)


def _body_digest(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k not in ("digest", "signature")}
    return canonical_digest(body)


def build_proof(
    mk: MarkingKey, vk: VerificationKey, challenge: Challenge, spend: Spend, spent_before: tuple[int, ...]
) -> Proof:
    """The proof opening ``spend``'s items of ``mk`` for ``challenge``."""
    seeds = mk.item_seeds() if mk.derivation is not None else None
    classes = mk.true_classes
    openings = tuple(
        Opening(
            index=i,
            seed=None if seeds is None else seeds[i],
            seed_opening=None if seeds is None else mk.seed_openings[i],
            image=mk.images[i],
            image_opening=mk.image_openings[i],
            label=int(mk.labels[i]),
            label_opening=mk.label_openings[i],
            classes=None if classes is None else classes[i],
        )
        for i in spend.indices
    )
    doc: dict[str, Any] = {
        "format": PROOF_FORMAT,
        "version": PROOF_VERSION,
        "vk_digest": vk.digest,
        "key_id": vk.key_id,
        "challenge": challenge.doc,
        "challenge_digest": challenge.digest,
        "size": spend.size,
        "slot": spend.slot,
        "indices": list(spend.indices),
        "spent_before": sorted(spent_before),
        "num_classes": vk.num_classes,
        "input_shape": list(vk.input_shape),
        "kind": vk.kind,
        "derivation": vk.derivation,
        "openings": [o.to_dict() for o in openings],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    doc["digest"] = _body_digest(doc)
    return Proof.of(doc, openings)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the key folder (blocks while another prover holds it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class Proven:
    """What :func:`prove` made: the proof, whether it re-issued an earlier answer, and what is left."""

    proof: Proof
    reissued: bool
    slots: int
    slots_left: int
    spent: int


def _check_size(size: int, n: int, challenge: Challenge) -> None:
    if challenge.size is not None and size != challenge.size:
        raise BackmarkError(
            f"the challenge asks for {challenge.size} items but {{size}} is {size}", params=["size"]
        )
    if not 1 <= size <= n:
        raise BackmarkError(f"{{size}} must lie in 1..{n} (the key's items), got {size}", params=["size"])


def prove(key: str | Path, challenge: Challenge, size: int | None = None) -> Proven:
    """Open the items ``challenge`` selects from the key at ``key`` (a folder or marking key file).

    ``size`` defaults to the challenge's. The spend is recorded in the marking key (atomically) before the
    proof is returned; the same challenge asked again gets the same items without a new spend. Raises
    BackmarkError when no slot of ``size`` unspent items is left, saying what is.
    """
    if size is None:
        if challenge.size is None:
            raise BackmarkError("the challenge does not fix a size: give {size} L", params=["size"])
        size = challenge.size
    mk_path, _ = resolve_key_paths(key)
    with _locked(mk_path.parent):
        mk, vk = load_key_pair(key)  # inside the lock: the spent record is current
        _check_size(size, mk.n, challenge)
        total = slot_count(mk.n, size)
        for earlier in mk.spent:
            if earlier.challenge == challenge.digest:
                if earlier.size != size:
                    raise BackmarkError(
                        f"this challenge was answered before with {earlier.size} items; answer it with "
                        f"{{size}} {earlier.size} again, or ask the verifier for a new challenge",
                        params=["size"],
                    )
                before = tuple(sorted(mk.spent_indices() - set(earlier.indices)))
                proof = build_proof(mk, vk, challenge, earlier, before)
                left = slots_left(vk.digest, mk.n, size, mk.spent_indices())
                return Proven(proof, True, total, left, len(mk.spent_indices()))
        spent = mk.spent_indices()
        chosen = select_slot(challenge.digest, vk.digest, mk.n, size, spent)
        if chosen is None:
            smaller = [s for s in (size // 2, size // 4) if s >= 1 and slots_left(vk.digest, mk.n, s, spent)]
            hint = f"; {smaller[0]} items would still fit" if smaller else "; make a new key"
            raise BackmarkError(
                f"key {vk.key_id} has no {size} unspent items left in one slot ({len(spent)} of {mk.n} "
                f"items spent, 0 of {total} verifications of {size} items left){hint}"
            )
        slot, indices = chosen
        spend = Spend(
            challenge=challenge.digest,
            size=size,
            slot=slot,
            indices=indices,
            time=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        updated = dataclasses.replace(mk, spent=(*mk.spent, spend))
        save_marking_key(updated, mk_path, force=True)  # recorded before anything is revealed
        step("spend-recorded")
        proof = build_proof(updated, vk, challenge, spend, tuple(sorted(spent)))
        left = slots_left(vk.digest, mk.n, size, updated.spent_indices())
        return Proven(proof, False, total, left, len(updated.spent_indices()))


def save_proof(proof: Proof, path: str | Path, *, force: bool = False) -> Path:
    return write_bytes(path, (json.dumps(proof.doc, indent=1) + "\n").encode(), mode=0o644, force=force)


def prove_to_file(
    key: str | Path,
    challenge: str | Path,
    out: str | Path,
    *,
    size: int | None = None,
    identity: Identity | None = None,
    force: bool = False,
) -> Proven:
    """The owner's side of a public check, as ``backmark prove`` runs it: answer the challenge file
    ``challenge`` from the key at ``key`` (:func:`prove`), sign the proof with ``identity`` if one is given
    and write it to ``out``.

    ``out`` is checked before any item is spent. The returned :class:`Proven` holds the proof as written
    (signed where ``identity`` is given).
    """
    check_file(out, force=force)  # before anything is spent
    made = prove(key, load_challenge(challenge), size)
    proof = made.proof if identity is None else sign_proof(made.proof, identity)
    save_proof(proof, out, force=True)
    return dataclasses.replace(made, proof=proof)


def _hex(value: Any, field: str, length: int | None = 32) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a hex string")
    raw = bytes.fromhex(value)
    if length is not None and len(raw) != length:
        raise ValueError(f"{field} must be {length} bytes")
    return raw


def _classes(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        raise ValueError("classes must be a list of integers")
    return tuple(value)


def parse_proof(doc: Any, where: str = "proof") -> Proof:
    """Check a proof's structure and digest; raise BackmarkError saying what is wrong."""
    check_versioned(doc, where, format=PROOF_FORMAT, version=PROOF_VERSION, noun="proof")
    if doc.get("digest") != _body_digest(doc):
        raise BackmarkError(f"{where} was changed after it was made: its digest does not match")
    if "signature" in doc:
        check_document_signature(doc, PROOF_PURPOSE, what=where)
    try:
        c, h, w = (int(v) for v in doc["input_shape"])
        pixels = c * h * w
        openings = []
        for k, item in enumerate(doc["openings"]):
            image = np.frombuffer(base64.b64decode(item["image"], validate=True), dtype=np.uint8)
            if image.size != pixels:
                raise ValueError(f"opening {k}: the image has {image.size} values, not {pixels}")
            seed = item["seed"]
            openings.append(
                Opening(
                    index=int(item["index"]),
                    seed=None if seed is None else _hex(seed, "seed"),
                    seed_opening=None if seed is None else _hex(item["seed_opening"], "seed_opening"),
                    image=image.reshape(c, h, w).copy(),
                    image_opening=_hex(item["image_opening"], "image_opening"),
                    label=int(item["label"]),
                    label_opening=_hex(item["label_opening"], "label_opening"),
                    classes=_classes(item.get("classes")),
                )
            )
        proof = Proof.of(doc, tuple(openings))
        proof.challenge  # noqa: B018 (checks the embedded challenge)
        if [o.index for o in openings] != list(proof.indices) or len(proof.indices) != proof.size:
            raise ValueError("its openings do not match its indices and size")
        _ = (proof.slot, proof.spent_before, proof.vk_digest, int(doc["num_classes"]), str(doc["kind"]))
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise BackmarkError(f"{where} has a missing or bad field: {exc}") from None
    return proof


def load_proof(path: str | Path) -> Proof:
    return parse_proof(read_json(path, "proof"), f"proof {path}")
