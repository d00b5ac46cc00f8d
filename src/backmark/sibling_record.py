"""The sibling record (``OUT.siblings/siblings.json``): its form, its digest and its checks. No torch.

The record is what the owner commits to before a model is released (docs/contrast.md): which of the
``k + 1`` models is deployed, the salt that drew it, and every model's weights digest. Its ``digest``
(SHA-256 of the canonical JSON of every other field) is what the registry records beside a verification
key (``backmark register --siblings``, docs/registry.md), so this module imports no torch: the registry's
commands read the record without the models. :mod:`backmark.contrast.siblings` writes records and loads
the models they list.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backmark.errors import BackmarkError, first_line
from backmark.identity import is_hex_digest
from backmark.infra.canonical_json import canonical_digest, canonical_json

FORMAT = "backmark-siblings"
VERSION = 1
RECORD = "siblings.json"
_CHOICE_TAG = b"backmark/v1/siblings/choice"
MAX_SIBLINGS = 64


def siblings_folder(out: str | Path) -> Path:
    """``OUT.siblings`` beside the deployed checkpoint ``OUT``."""
    out = Path(out)
    return out.with_name(out.name + ".siblings")


def choice_of(salt: bytes, models: int) -> int:
    """The deployed index drawn from ``salt``: SHA-256(tag || salt) as an integer, mod ``models``."""
    return int.from_bytes(hashlib.sha256(_CHOICE_TAG + salt).digest(), "big") % models


@dataclass(frozen=True)
class SiblingRecord:
    """A parsed ``siblings.json``."""

    seeds: tuple[int, ...]
    weights: tuple[str, ...]
    deployed: int
    salt: bytes
    recipe_json: str  # the recipe as canonical JSON text (a frozen record holds no dict)
    created: str

    @property
    def recipe(self) -> dict[str, Any]:
        recipe: dict[str, Any] = json.loads(self.recipe_json)
        return recipe

    def doc(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created,
            "models": [
                {"seed": s, "weights_sha256": w} for s, w in zip(self.seeds, self.weights, strict=True)
            ],
            "deployed": self.deployed,
            "salt": self.salt.hex(),
            "recipe": self.recipe,
        }
        return {**body, "digest": canonical_digest(body)}

    @property
    def digest(self) -> str:
        return str(self.doc()["digest"])


def _bad(path: Path, why: str) -> BackmarkError:
    return BackmarkError(f"{path} is not a usable sibling record: {why}; train siblings with --siblings K")


def parse_record(doc: Any, path: Path) -> SiblingRecord:
    """Check a ``siblings.json`` document field by field, its digest included."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(path, f'no "format": "{FORMAT}"')
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        raise _bad(path, f"version {doc.get('version')!r}; this backmark reads {VERSION}")
    models = doc.get("models")
    if not isinstance(models, list) or not 2 <= len(models) <= MAX_SIBLINGS + 1:
        raise _bad(path, f'"models" must list 2 to {MAX_SIBLINGS + 1} models')
    seeds, weights = [], []
    for entry in models:
        seed, digest = (entry.get("seed"), entry.get("weights_sha256")) if isinstance(entry, dict) else (0, 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or not isinstance(digest, str):
            raise _bad(path, 'every model needs an integer "seed" and a "weights_sha256"')
        if not is_hex_digest(digest):
            raise _bad(path, '"weights_sha256" must be 64 lowercase hex digits')
        seeds.append(seed)
        weights.append(digest)
    deployed, salt = doc.get("deployed"), doc.get("salt")
    if not isinstance(deployed, int) or isinstance(deployed, bool) or not 0 <= deployed < len(models):
        raise _bad(path, f'"deployed" must be an index in 0..{len(models) - 1}')
    try:
        raw_salt = bytes.fromhex(salt) if isinstance(salt, str) and len(salt) == 64 else b""
    except ValueError:
        raw_salt = b""
    if len(raw_salt) != 32:
        raise _bad(path, '"salt" must be 64 hex digits')
    recipe, created = doc.get("recipe"), doc.get("created")
    if not isinstance(recipe, dict) or not isinstance(created, str):
        raise _bad(path, '"recipe" must be an object and "created" a string')
    record = SiblingRecord(
        tuple(seeds), tuple(weights), deployed, raw_salt, canonical_json(recipe).decode(), created
    )
    if record.digest != doc.get("digest"):
        raise _bad(path, "its digest does not match its contents (changed after it was written?)")
    if choice_of(raw_salt, len(models)) != deployed:
        raise _bad(path, "the deployed index is not the one its salt draws")
    return record


def record_path(path: str | Path) -> Path:
    """The record of ``path``: a deployed checkpoint ``CKPT`` (``CKPT.siblings/siblings.json``), a sibling
    folder (``FOLDER/siblings.json``) or the record file itself."""
    path = Path(path)
    if path.is_dir():
        return path / RECORD
    if path.name == RECORD and path.is_file():
        return path
    return siblings_folder(path) / RECORD


def read_record(
    path: str | Path, *, hint: str = "train the owner's model with `--siblings K`"
) -> SiblingRecord:
    """The checked record at ``path`` (the ``siblings.json`` file); a one-line BackmarkError if it is
    missing (``hint`` says what to do), unreadable, or fails a check of :func:`parse_record`."""
    path = Path(path)
    if not path.is_file():
        raise BackmarkError(f"no sibling record {path}: {hint}")
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, RecursionError, OSError) as exc:
        raise _bad(path, f"unreadable JSON ({first_line(exc)})") from None
    return parse_record(doc, path)
