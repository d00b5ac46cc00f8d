"""Sibling models: k + 1 models of one recipe, one deployed by committed randomness, k kept secret.

At marking time the owner trains ``k + 1`` models that differ only in their seed (same data, key and
settings). Which one is deployed is drawn from fresh OS randomness before the first model is trained
(:func:`plan_siblings`), so the choice cannot depend on the models. The deployed model goes to ``--out``;
the others, and a record of all ``k + 1``, go to the folder ``OUT.siblings/`` (mode 0700):

``siblings.json`` (format ``backmark-siblings``, version 1; public: publish its digest before release)::

    {"format": "backmark-siblings", "version": 1, "created": "2026-12-06T01:00:00+00:00",
     "models": [{"seed": 123, "weights_sha256": "<64 hex>"}, ...],   # k + 1 entries, training order
     "deployed": 2,                       # index of the deployed model
     "salt": "<64 hex>",                  # deployed = SHA-256(tag || salt) mod (k + 1)
     "recipe": {...},                     # what the models share (mode, data, config)
     "digest": "<64 hex>"}                # SHA-256 of the canonical JSON of every other field

``model-I.pt``: sibling I, a backmark checkpoint (I never the deployed index). The siblings are as secret
as a marking key: whoever holds them can pick the answers the contrast test counts. Register ``digest``
beside the verification key (``backmark register --siblings OUT``, docs/registry.md) before the model is
released: then nobody can choose the deployed model, or swap a sibling, after a suspect exists. The
record's form and checks are in :mod:`backmark.sibling_record` (no torch, so the registry reads it).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backmark.atomic import atomic_folder, check_folder, write_bytes
from backmark.errors import BackmarkError
from backmark.infra.canonical_json import canonical_json
from backmark.models.checkpoint import load_checkpoint, save_checkpoint
from backmark.models.info import ModelInfo
from backmark.sibling_record import FORMAT as FORMAT
from backmark.sibling_record import MAX_SIBLINGS as MAX_SIBLINGS
from backmark.sibling_record import RECORD as RECORD
from backmark.sibling_record import VERSION as VERSION
from backmark.sibling_record import SiblingRecord as SiblingRecord
from backmark.sibling_record import choice_of as choice_of
from backmark.sibling_record import parse_record as parse_record
from backmark.sibling_record import read_record
from backmark.sibling_record import siblings_folder as siblings_folder

_SEED_TAG = b"backmark/v1/siblings/seed"


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over the state dict: every entry's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class SiblingPlan:
    """What is fixed before any model is trained: the seeds, the salt and so the deployed index."""

    seeds: tuple[int, ...]
    salt: bytes
    deployed: int


def plan_siblings(*, siblings: int, seed: int, salt: bytes | None = None) -> SiblingPlan:
    """Seeds for ``siblings + 1`` models (the first is ``seed``) and a deployed index from OS randomness.

    ``salt`` (32 bytes) replaces the OS randomness, for studies that must replay a run; an owner who
    picks it can pick the deployed model, which voids the rank test's exactness (docs/contrast.md).
    """
    if not 1 <= siblings <= MAX_SIBLINGS:
        raise BackmarkError(
            f"{{siblings}} must lie in 1..{MAX_SIBLINGS}, got {siblings}", params=["siblings"]
        )
    seeds = [seed] + [
        int.from_bytes(hashlib.sha256(_SEED_TAG + f"{seed}/{i}".encode()).digest()[:4], "big") & 0x7FFFFFFF
        for i in range(1, siblings + 1)
    ]
    if salt is None:
        salt = secrets.token_bytes(32)
    elif len(salt) != 32:
        raise BackmarkError(f"a sibling salt must be 32 bytes, got {len(salt)}")
    return SiblingPlan(tuple(seeds), salt, choice_of(salt, siblings + 1))


def write_siblings(
    out: str | Path,
    models: Sequence[tuple[nn.Module, ModelInfo]],
    plan: SiblingPlan,
    *,
    recipe: dict[str, Any],
    force: bool = False,
) -> SiblingRecord:
    """Write the record of all ``models`` and every one but the deployed to ``OUT.siblings/``.

    ``models`` are in the order of ``plan.seeds``; the deployed one (``models[plan.deployed]``) is the
    caller's to save to ``out`` (:func:`~backmark.models.save_checkpoint`), as without siblings. The
    folder is replaced only with ``force``; it is created with mode 0700 (the siblings are secret).
    Returns the record written (its ``digest`` is the value to register).
    """
    if len(models) != len(plan.seeds):
        raise BackmarkError(f"{len(plan.seeds)} models were planned but {len(models)} were trained")
    record = SiblingRecord(
        seeds=plan.seeds,
        weights=tuple(weights_digest(m) for m, _ in models),
        deployed=plan.deployed,
        salt=plan.salt,
        recipe_json=canonical_json(recipe).decode(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    folder = siblings_folder(out)
    with atomic_folder(folder, force=force, owned=owned, what="sibling models", mode=0o700) as staging:
        for i, (model, info) in enumerate(models):
            if i != plan.deployed:
                save_checkpoint(staging / f"model-{i}.pt", model, info)
        text = json.dumps(record.doc(), indent=1, sort_keys=True) + "\n"
        write_bytes(staging / RECORD, text.encode(), mode=0o644)
    return record


def owned(name: str) -> bool:
    """The entries a sibling folder holds (what ``--force`` may replace)."""
    return name == RECORD or (name.startswith("model-") and name.endswith(".pt"))


def check_siblings_folder(out: str | Path, *, force: bool) -> None:
    """Refuse, before any training, a sibling folder that could not be written."""
    check_folder(siblings_folder(out), force=force, owned=owned, what="sibling models")


@dataclass(frozen=True, eq=False)
class Siblings:
    """The deployed model and its siblings, loaded and checked against their record."""

    deployed: nn.Module
    info: ModelInfo
    siblings: tuple[nn.Module, ...]
    record: SiblingRecord
    folder: Path


def load_siblings(owner: str | Path, folder: str | Path | None = None) -> Siblings:
    """Load the deployed checkpoint ``owner`` and its siblings (``OWNER.siblings/`` unless ``folder``).

    Every model's weights must have the digest the record lists for it; a one-line BackmarkError says
    which does not.
    """
    owner = Path(owner)
    folder = Path(folder) if folder is not None else siblings_folder(owner)
    path = folder / RECORD
    record = read_record(path, hint="train the owner's model with `--siblings K` (or give --siblings-dir)")
    deployed, info = load_checkpoint(owner)
    if weights_digest(deployed) != record.weights[record.deployed]:
        raise BackmarkError(
            f"{owner} is not the deployed model of {path}: its weights digest differs from the record's"
        )
    siblings = []
    for i, digest in enumerate(record.weights):
        if i == record.deployed:
            continue
        model, _ = load_checkpoint(folder / f"model-{i}.pt")
        if weights_digest(model) != digest:
            raise BackmarkError(f"{folder / f'model-{i}.pt'} does not have the weights {path} lists for it")
        siblings.append(model)
    return Siblings(deployed, info, tuple(siblings), record, folder)
