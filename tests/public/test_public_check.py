"""check: every opening is checked and every rejection has a reason, before the suspect is queried."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import seed_of
from public_helpers import LookupTarget

from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, generate_key, load_key_pair, save_key_pair
from backmark.public import check_proof, load_proof, new_challenge, prove, save_proof
from backmark.public.challenge import Challenge
from backmark.public.proof import Proof, _body_digest, parse_proof


def proven(key_dir: Path, size: int = 20) -> tuple[MarkingKey, Any, Challenge, Proof]:
    challenge = new_challenge(size=size)
    made = prove(key_dir, challenge)
    mk, vk = load_key_pair(key_dir)
    return mk, vk, challenge, made.proof


def test_a_marked_model_verifies_and_a_clean_one_does_not(key_dir: Path) -> None:
    mk, vk, challenge, proof = proven(key_dir)
    suspect = LookupTarget(mk)
    result = check_proof(suspect, vk, challenge, proof)
    assert result.verified and result.triggers_verifiable
    d = result.to_dict()
    labels = d["evidence"]["labels"]
    assert labels["matches"] == d["n"] == 20 and d["slot_choices"] == 3 and d["keys_held"] == 1
    assert d["indices"] == list(proof.indices) and labels["threshold"] == 12  # at 1e-6 / (3 x 2)
    assert d["test"] == "either" and d["level"] == pytest.approx(1e-6 / 6) and "matches" not in d
    assert labels["p_value"] == pytest.approx(1e-20) and d["p_value_corrected"] == pytest.approx(6e-20)
    assert suspect.queries == 20  # only the opened items are sent
    # every answer label + 1: a copy with renamed classes, caught by the default decision (label-free)
    renamed = check_proof(LookupTarget(mk, rate=0.0), vk, challenge, proof)
    free_passes = renamed.label_free is not None and renamed.label_free.verified  # 20 items: key-dependent
    assert renamed.verified == free_passes and not renamed.evidence.verified
    assert renamed.decision.passed == (("label-free",) if free_passes else ())
    clean = check_proof(LookupTarget(mk, rate=0.0), vk, challenge, proof, test="labels")
    assert not clean.verified and clean.evidence.matches == 0 and "only 0 of 20" in clean.reason
    assert clean.to_dict()["evidence"]["label-free"]["decisive"] is False
    # the label-free test on the same answers, reported beside: names kept, as many hits as matches; the
    # suspect above answers label + 1 everywhere (renamed classes): every trigger after the first of its
    # label is a hit, and a first one only when the guess among the unclaimed labels happens to be right
    free = d["evidence"]["label-free"]
    assert result.label_free is not None and result.label_free.matches == 20 == free["hits"]
    distinct = len({int(mk.labels[i]) for i in proof.indices})
    assert clean.label_free is not None and 20 - distinct <= clean.label_free.matches <= 20
    assert clean.label_free.alpha == clean.evidence.alpha  # at the same corrected level


def test_corrections_raise_the_threshold(key_dir: Path) -> None:
    mk, vk, challenge, proof = proven(key_dir)
    weakened = LookupTarget(mk, rate=0.6)  # answers the first 36 of 60 triggers
    one = check_proof(weakened, vk, challenge, proof, alpha=1e-3)
    many = check_proof(weakened, vk, challenge, proof, alpha=1e-3, keys_held=1000)
    assert many.evidence.threshold > one.evidence.threshold
    assert many.p_value_corrected == pytest.approx(min(1.0, 1000 * one.p_value_corrected))
    with pytest.raises(BackmarkError, match="keys_held"):
        check_proof(weakened, vk, challenge, proof, keys_held=0)


def _resealed(proof: Proof, **changes: Any) -> Proof:
    doc = {**proof.doc, **changes}
    doc["digest"] = _body_digest(doc)
    return parse_proof(doc)


def _rejects(proof: Proof, vk: Any, challenge: Challenge, expected: str, **kw: Any) -> None:
    target = LookupTarget.__new__(LookupTarget)  # never queried: a rejection comes first
    with pytest.raises(BackmarkError) as info:
        check_proof(target, vk, challenge, proof, **kw)
    assert expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_one_changed_byte_anywhere_in_the_values_is_refused(key_dir: Path, tmp_path: Path) -> None:
    mk, vk, challenge, proof = proven(key_dir)
    path = save_proof(proof, tmp_path / "p.json")
    text = path.read_text()
    rng = np.random.default_rng(0)
    hexes = [i for i, ch in enumerate(text) if ch in "0123456789abcdef" and text[i - 1] not in '"\n ']
    for position in rng.choice(hexes, size=40, replace=False):
        ch = text[position]
        changed = text[:position] + ("1" if ch != "1" else "2") + text[position + 1 :]
        path.write_text(changed)
        try:
            tampered = load_proof(path)
        except BackmarkError:
            continue  # refused when read: its digest, or a field that no longer parses
        with pytest.raises(BackmarkError):
            check_proof(LookupTarget(mk), vk, challenge, tampered)


def test_rejections_have_reasons(key_dir: Path, tmp_path: Path, noise_key: MarkingKey) -> None:
    _mk, vk, challenge, proof = proven(key_dir)
    other_dir = tmp_path / "other"
    save_key_pair(generate_key(num_classes=10, input_shape=(1, 12, 12), size=60, kind="noise"), other_dir)
    _, other_vk = load_key_pair(other_dir)
    _rejects(proof, other_vk, challenge, "not for this verification key")
    _rejects(proof, vk, new_challenge(size=20), "answers another challenge")
    # the owner claims another slot, with a fresh digest: its items are not that slot
    _rejects(_resealed(proof, slot=(proof.slot + 1) % 3), vk, challenge, "not slot")
    _rejects(_resealed(proof, slot=7), vk, challenge, "does not exist")
    # an item the owner's own record lists as spent
    _rejects(_resealed(proof, spent_before=[proof.indices[0]]), vk, challenge, "already spent")
    # an item an earlier proof opened
    earlier = prove(key_dir, new_challenge(size=20)).proof
    overlap = Proof.of({**earlier.doc, "indices": list(proof.indices)}, earlier.openings)
    _rejects(proof, vk, challenge, "already opened by an earlier proof", previous=[overlap])
    _rejects(proof, vk, new_challenge(), "answers another challenge")


def _reopened(proof: Proof, index_in_proof: int, **changes: Any) -> Proof:
    doc = json.loads(json.dumps(proof.doc))
    doc["openings"][index_in_proof].update(changes)
    doc["digest"] = _body_digest(doc)
    return parse_proof(doc)


def test_openings_that_do_not_open_are_refused(key_dir: Path) -> None:
    _mk, vk, challenge, proof = proven(key_dir)
    first = proof.openings[0]
    label = (first.label + 1) % 10
    _rejects(_reopened(proof, 0, label=label), vk, challenge, f"trigger label {first.index} does not open")
    _rejects(_reopened(proof, 0, seed="00" * 32), vk, challenge, f"seed of item {first.index} does not open")
    image = first.image.copy()
    image[0, 0, 0] ^= 1
    import base64

    _rejects(
        _reopened(proof, 0, image=base64.b64encode(image.tobytes()).decode()),
        vk,
        challenge,
        f"trigger image {first.index} does not open",
    )
    _rejects(_reopened(proof, 0, seed=None, seed_opening=None), vk, challenge, "gives no seed")


def test_a_key_whose_images_were_swapped_is_caught_by_regeneration(
    tmp_path: Path, noise_key: MarkingKey
) -> None:
    # The claimant recommits: every commitment opens, but the images are not what the seeds make.
    images = noise_key.images.copy()
    images[:, :, :4, :4] = 0
    forged = dataclasses.replace(noise_key, images=images)
    save_key_pair(forged, tmp_path / "forged")
    _mk, vk, challenge, proof = proven(tmp_path / "forged")
    _rejects(proof, vk, challenge, "is not the one its seed generates")


def test_a_key_whose_labels_were_chosen_is_caught(tmp_path: Path, noise_key: MarkingKey) -> None:
    labels = np.zeros_like(noise_key.labels)
    forged = dataclasses.replace(noise_key, labels=labels)
    save_key_pair(forged, tmp_path / "forged")
    _mk, vk, challenge, proof = proven(tmp_path / "forged")
    _rejects(proof, vk, challenge, "is not the one its seed gives")


def test_unverifiable_triggers_are_evidence_only_when_accepted(tmp_path: Path, adi_folder: Path) -> None:
    mk = generate_key(
        num_classes=10, input_shape=(3, 16, 16), size=20, kind=f"folder:{adi_folder}", seed=seed_of("f")
    )
    save_key_pair(mk, tmp_path / "folder")
    mk, vk, challenge, proof = proven(tmp_path / "folder", size=10)
    plain = check_proof(LookupTarget(mk), vk, challenge, proof)
    assert not plain.verified and not plain.triggers_verifiable and plain.evidence.matches == 10
    assert "read from files" in plain.reason and "not accepted" in plain.reason
    accepted = check_proof(LookupTarget(mk), vk, challenge, proof, accept_unverifiable=True)
    assert accepted.verified and "accepted although" in accepted.reason
    # a key made before seeds were committed
    old = dataclasses.replace(mk, derivation=None, seed_openings=(), spent=())
    save_key_pair(old, tmp_path / "old")
    _, old_vk, old_challenge, old_proof = proven(tmp_path / "old", size=10)
    result = check_proof(LookupTarget(mk), old_vk, old_challenge, old_proof)
    assert not result.verified and "no seed commitments" in result.reason


@pytest.fixture
def adi_folder(tmp_path: Path) -> Path:
    """A folder of 20 photos of the user's own (random pixels here; any files would do)."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder
