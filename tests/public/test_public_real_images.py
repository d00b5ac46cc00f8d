"""Public checks of keys made of real images (heldout, blend): each opening reveals its true classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import seed_of
from public_helpers import LookupTarget

from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, generate_key, load_key_pair, save_key_pair
from backmark.public import check_proof, new_challenge, prove
from backmark.public.challenge import Challenge
from backmark.public.proof import Proof, _body_digest, parse_proof

SHAPE = (1, 8, 8)


def real_key(kind: str, size: int = 60) -> MarkingKey:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(400, *SHAPE), dtype=np.uint8)
    return generate_key(
        num_classes=10,
        input_shape=SHAPE,
        size=size,
        kind=kind,
        seed=seed_of(f"public {kind}"),
        pool=(images, np.arange(400, dtype=np.int64) % 10),
        pool_name="test pool",
    )


@pytest.fixture(params=["heldout", "blend"])
def proven(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[MarkingKey, Any, Challenge, Proof]:
    save_key_pair(real_key(request.param), tmp_path / "k")
    challenge = new_challenge(size=20)
    proof = prove(tmp_path / "k", challenge).proof
    mk, vk = load_key_pair(tmp_path / "k")
    return mk, vk, challenge, proof


def test_a_marked_model_verifies_at_the_real_image_null(
    proven: tuple[MarkingKey, Any, Challenge, Proof],
) -> None:
    mk, vk, challenge, proof = proven
    classes = mk.true_classes
    assert classes is not None
    assert [o.classes for o in proof.openings] == [classes[i] for i in proof.indices]
    assert all(len(o.classes or ()) == (1 if mk.kind == "heldout" else 2) for o in proof.openings)
    result = check_proof(LookupTarget(mk), vk, challenge, proof)
    assert result.verified and result.triggers_verifiable and result.reason.startswith("20 of 20")
    assert result.evidence.null_classes == vk.null_classes == 10 - (1 if mk.kind == "heldout" else 2)
    assert result.label_free is not None and result.label_free.null_classes == vk.null_classes
    # a model that answers each image's (declared) true class never matches: labels avoid it
    truth = LookupTarget(mk)
    truth.lookup = {mk.images[i].tobytes(): classes[i][0] for i in range(mk.n)}
    clean = check_proof(truth, vk, challenge, proof)
    assert not clean.verified and clean.evidence.matches == 0


def _reopened(proof: Proof, position: int, classes: Any) -> Proof:
    doc = {**proof.doc, "openings": [dict(o) for o in proof.doc["openings"]]}
    if classes is None:
        doc["openings"][position].pop("classes")
    else:
        doc["openings"][position]["classes"] = classes
    doc["digest"] = _body_digest(doc)
    return parse_proof(doc)


def test_true_classes_that_differ_from_the_committed_ones_are_refused(
    proven: tuple[MarkingKey, Any, Challenge, Proof],
) -> None:
    mk, vk, challenge, proof = proven
    first = list(proof.openings[0].classes or ())
    other = [(c + 1) % 10 for c in first]  # still distinct classes of the key, but not the bound ones
    if mk.kind == "blend":
        other = [first[1], first[0]]  # the same classes in another order do not open either
    cases = [
        (other, "the commitment to the seed of item"),
        (None, "gives no"),
        ([*first, (first[-1] + 5) % 10], "distinct true classes"),
        ([11] * len(first) if len(first) == 1 else [11, 12], "not classes of the key"),
        ("3", "classes must be a list of integers"),
    ]
    target = LookupTarget(mk)
    for classes, expected in cases:
        with pytest.raises(BackmarkError) as info:
            check_proof(target, vk, challenge, _reopened(proof, 0, classes))
        assert expected in str(info.value), (classes, str(info.value))
    assert target.queries == 0  # every rejection comes before the suspect is asked


def test_classes_in_a_proof_of_an_abstract_key_are_refused(tmp_path: Path) -> None:
    mk = generate_key(num_classes=10, input_shape=SHAPE, size=40, seed=seed_of("abstract"))
    save_key_pair(mk, tmp_path / "k")
    challenge = new_challenge(size=10)
    proof = prove(tmp_path / "k", challenge).proof
    assert "classes" not in proof.doc["openings"][0]  # abstract proofs keep their format
    _, vk = load_key_pair(tmp_path / "k")
    with pytest.raises(BackmarkError, match="gives true classes for item"):
        check_proof(LookupTarget(mk), vk, challenge, _reopened(proof, 0, [1]))
