"""Public verification: check a proof against the verification key and the challenge, then the suspect.

Anyone holding the verification key, the challenge and the proof can run :func:`check_proof`. In order:

1. the proof is for this key (its digest) and answers this challenge (its digest), with the size the
   challenge fixed, if it fixed one;
2. the opened items are exactly slot ``slot`` of that size in the key's public order, and none of them
   was opened before (by the proofs given as ``previous``, or by the owner's own record in the proof);
3. every commitment opens: each item's seed, image and label;
4. for a key with derived items (format 2), each label is the one its seed and the key's root give, and,
   for a generated kind (``abstract``, ``noise``), each image is regenerated from its seed and compared
   bit for bit. Only then are the triggers *verifiable*: nobody could have chosen them to fit a model.
   Items made of real images (``heldout``, ``blend``) open their true classes too: the seed commitment
   binds them and the image, so both were fixed before the root, and the label must be the one the root
   gives among the other classes. Whatever the images, a model that never saw the key matches such a label
   with probability at most 1/(C - k) (k classes excluded: docs/heldout-triggers.md), the null the test
   uses, so these items are verifiable too;
5. only now is the suspect queried, on the opened images (with decoys if asked), and the exact tests
   applied to the opened items (by default the labels and the label-free tests, either deciding, so
   that renamed classes do not hide the mark), each p-value multiplied by the number of slots the owner
   could have opened (:func:`backmark.public.selection.slot_choices`), by the number of keys the
   claimant holds for this model and by the number of tests that decide (Bonferroni), so that the
   decision's false-positive rate stays at most alpha.

A failure in 1 to 4 raises BackmarkError (``backmark check`` exits 2) and nothing is sent to the
suspect. Items that are not verifiable (a ``folder`` key, or a key made before format 2) are evidence
only when the caller accepts them explicitly; otherwise the result is ``verified: false`` with the
reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from backmark.constants import DEFAULT_ALPHA, DEFAULT_VERIFY_TEST, VerifyTest
from backmark.errors import BackmarkError
from backmark.keys import VerificationKey, derive
from backmark.keys import commitments as com
from backmark.keys.keygen import derived_image
from backmark.public.challenge import Challenge
from backmark.public.proof import Opening, Proof
from backmark.public.selection import slot_choices, slot_indices
from backmark.targets import Target, as_target, check_target
from backmark.triggers import get_trigger_kind
from backmark.verify import Evidence, query_labels
from backmark.verify.decision import TEST_PIECES, Decision, piece_level
from backmark.verify.labelfree import label_free_evidence, mark_decision
from backmark.verify.stats import check_alpha


@dataclass(frozen=True)
class OpenedItems:
    """What a checked proof reveals: the images (uint8 (l, C, H, W)), labels, indices, and whether the
    items are verifiable (with the reason when not)."""

    images: np.ndarray
    labels: np.ndarray
    indices: tuple[int, ...]
    triggers_verifiable: bool
    reason: str | None


def check_openings_public(
    vk: VerificationKey, challenge: Challenge, proof: Proof, previous: Sequence[Proof] = ()
) -> OpenedItems:
    """Steps 1 to 4 of the module docstring; raise BackmarkError naming the first thing that is wrong."""
    if proof.vk_digest != vk.digest:
        raise BackmarkError(
            f"the proof is for key {proof.vk_digest[:16]}, not for this verification key ({vk.key_id})"
        )
    if proof.doc.get("challenge_digest") != challenge.digest or proof.challenge.digest != challenge.digest:
        raise BackmarkError(
            "the proof answers another challenge (its challenge digest does not match this challenge)"
        )
    if challenge.size is not None and proof.size != challenge.size:
        raise BackmarkError(f"the challenge asks for {challenge.size} items but the proof opens {proof.size}")
    if not 1 <= proof.size <= vk.n or not 0 <= proof.slot < vk.n // proof.size:
        raise BackmarkError(f"the proof's slot {proof.slot} of size {proof.size} does not exist in this key")
    if proof.indices != slot_indices(vk.digest, vk.n, proof.size, proof.slot):
        raise BackmarkError(
            f"the proof opens items that are not slot {proof.slot} of size {proof.size} of this key"
        )
    again = set(proof.indices) & set(proof.spent_before)
    if again:
        raise BackmarkError(f"the proof opens item {min(again)}, which its owner had already spent")
    for earlier in previous:
        if earlier.vk_digest != vk.digest or earlier.digest == proof.digest:
            continue
        again = set(proof.indices) & set(earlier.indices)
        if again:
            raise BackmarkError(
                f"item {min(again)} was already opened by an earlier proof (challenge "
                f"{earlier.challenge.digest[:16]}); an item opened twice is no evidence"
            )
    c, h, w = vk.input_shape
    if list(proof.doc["input_shape"]) != [c, h, w] or int(proof.doc["num_classes"]) != vk.num_classes:
        raise BackmarkError("the proof's shape or class count differs from the verification key's")
    derived = vk.derivation is not None
    root = vk.root() if derived else b""
    parts = derive.REAL_PARTS.get(vk.kind, 0)
    for o in proof.openings:
        classes = _true_classes(o, parts, vk)
        if o.image.shape != vk.input_shape:
            raise BackmarkError(f"the proof's image {o.index} has the wrong shape")
        if not com.opens(
            vk.image_commitments[o.index], com.IMAGE_TAG, o.image_opening, com.encode_image(o.image)
        ):
            raise BackmarkError(f"the commitment to trigger image {o.index} does not open to its image")
        if not 0 <= o.label < vk.num_classes or not com.opens(
            vk.label_commitments[o.index],
            com.LABEL_TAG,
            o.label_opening,
            com.encode_label(o.label, vk.num_classes),
        ):
            raise BackmarkError(f"the commitment to trigger label {o.index} does not open to its label")
        if derived:
            if o.seed is None or o.seed_opening is None:
                raise BackmarkError(f"the proof gives no seed for item {o.index} of a key with seeds")
            bound = derive.bound_item(classes, o.image) if parts else b""
            if not derive.seed_opens(vk.seed_commitments[o.index], o.seed, o.seed_opening, bound):
                raise BackmarkError(
                    f"the commitment to the seed of item {o.index} does not open"
                    + (f" (with its image and true classes {list(classes)})" if parts else "")
                )
            if derive.derived_label(root, o.seed, o.index, vk.num_classes, exclude=classes) != o.label:
                raise BackmarkError(
                    f"label {o.index} is not the one its seed gives: the key was not made by keygen"
                )
    images = np.stack([o.image for o in proof.openings])
    labels = np.array([o.label for o in proof.openings], dtype=np.int64)
    kind = get_trigger_kind(vk.kind) if derived else None
    if kind is not None and kind.generate is not None:
        for o in proof.openings:
            assert o.seed is not None  # checked above for every item of a derived key
            again_image = derived_image(kind.generate, root, o.seed, o.index, vk.input_shape)
            if not np.array_equal(again_image, o.image):
                changed = int(np.count_nonzero(again_image != o.image))
                raise BackmarkError(
                    f"trigger image {o.index} is not the one its seed generates ({changed} of "
                    f"{o.image.size} values differ): the triggers were not made by keygen"
                )
        return OpenedItems(images, labels, proof.indices, True, None)
    if derived and parts:  # real images, bound before the root: labels uniform on the other classes
        return OpenedItems(images, labels, proof.indices, True, None)
    if not derived:
        reason = "the key has no seed commitments (made before verifiable triggers), so its images and "
        reason += "labels could have been chosen to fit a model"
    else:
        reason = f"the key's images were read from files ({vk.kind}), not generated from their seeds, so "
        reason += "they could have been chosen to fit a model"
    return OpenedItems(images, labels, proof.indices, False, reason)


def _true_classes(opening: Opening, parts: int, vk: VerificationKey) -> tuple[int, ...]:
    """The opened item's true classes: exactly ``parts`` distinct classes for a real-image key, else none."""
    classes = opening.classes
    if not parts:
        if classes is not None:
            raise BackmarkError(f"the proof gives true classes for item {opening.index} of a {vk.kind} key")
        return ()
    if classes is None or len(classes) != parts or len(set(classes)) != parts:
        raise BackmarkError(
            f"the proof gives no {parts} distinct true classes for item {opening.index} of a {vk.kind} key"
        )
    if not all(0 <= c < vk.num_classes for c in classes):
        raise BackmarkError(f"item {opening.index}'s true classes {list(classes)} are not classes of the key")
    return classes


@dataclass(frozen=True)
class CheckResult:
    """A public check's outcome, decided by ``test`` (default: either the labels or the label-free test).

    ``evidence`` (the labels test) and ``label_free`` (the label-free test on the same answers) are each
    at the corrected level ``alpha / (slot_choices * keys_held * t)``, ``t`` the number of tests that
    decide (2 for ``either``); ``p_value_corrected`` = min(1, that factor * the smaller decisive p)."""

    key_id: str
    evidence: Evidence
    alpha: float
    slot_choices: int
    keys_held: int
    p_value_corrected: float
    triggers_verifiable: bool
    accepted_unverifiable: bool
    indices: tuple[int, ...]
    challenge_digest: str
    reason: str
    signed_by: str | None = None
    label_free: Evidence | None = None  # the label-free test on the same answers
    test: VerifyTest = "labels"

    @property
    def decision(self) -> Decision:
        """The claim over the opened items: the decisive tests at the corrected level (the rest reported)."""
        return mark_decision(self.test, self.evidence, self.label_free)  # alpha: over slots and keys

    @property
    def verified(self) -> bool:
        return self.decision.verified and (self.triggers_verifiable or self.accepted_unverifiable)

    def to_dict(self) -> dict[str, Any]:
        """The claim on top (``verified``, ``alpha``, the corrected p-value, ``test``), each test's figures
        under its own name in ``evidence``, then what the correction and the openings were."""
        claim = self.decision.to_dict()
        return {
            "key_id": self.key_id,
            "verified": self.verified,
            "alpha": self.alpha,
            "p_value_corrected": self.p_value_corrected,
            "test": self.test,
            "corrected_alpha": claim["alpha"],
            "level": claim["level"],
            "passed": claim["passed"],
            "evidence": claim["evidence"],
            "n": self.evidence.n,
            "num_classes": self.evidence.num_classes,
            "slot_choices": self.slot_choices,
            "keys_held": self.keys_held,
            "triggers_verifiable": self.triggers_verifiable,
            "accepted_unverifiable": self.accepted_unverifiable,
            "indices": list(self.indices),
            "challenge_digest": self.challenge_digest,
            "signed_by": self.signed_by,
            "reason": self.reason,
        }


def check_proof(
    model: nn.Module | Target,
    vk: VerificationKey,
    challenge: Challenge,
    proof: Proof,
    *,
    alpha: float = DEFAULT_ALPHA,
    keys_held: int = 1,
    accept_unverifiable: bool = False,
    previous: Sequence[Proof] = (),
    test: VerifyTest = DEFAULT_VERIFY_TEST,
) -> CheckResult:
    """Check ``proof`` (see the module docstring), then query ``model`` on the opened items and decide."""
    check_alpha(alpha)
    if test not in TEST_PIECES:
        raise BackmarkError(
            f"{{test}} must be one of {', '.join(TEST_PIECES)}, got {test!r}", params=["test"]
        )
    if keys_held < 1:
        raise BackmarkError(f"{{keys_held}} must be at least 1, got {keys_held}", params=["keys_held"])
    opened = check_openings_public(vk, challenge, proof, previous)
    choices = slot_choices(vk.n, challenge.size)
    tests = TEST_PIECES[test]
    level = piece_level(alpha, choices * keys_held * tests)  # Bonferroni over slots, keys, tests
    target = as_target(model)
    check_target(target, input_shape=vk.input_shape, num_classes=vk.num_classes)
    x = torch.from_numpy(opened.images.astype(np.float32) / 255.0)
    shape = "x".join(map(str, vk.input_shape))
    answers = query_labels(target, x, num_classes=vk.num_classes, what=f"the opened {shape} images")
    matches = int((answers == torch.from_numpy(opened.labels)).sum())
    n = len(opened.indices)
    evidence = Evidence.of(
        matches, n=n, num_classes=vk.num_classes, alpha=level, null_classes=vk.null_classes
    )
    free = label_free_evidence(
        answers.tolist(),
        opened.labels.tolist(),
        num_classes=vk.num_classes,
        alpha=level,
        null_classes=vk.null_classes,
    )
    decisive = [e for name, e in (("labels", evidence), ("label-free", free)) if test in (name, "either")]
    best = min(decisive, key=lambda e: e.p_value)
    corrected = min(1.0, best.p_value * choices * keys_held * tests)
    passed = any(e.verified for e in decisive)
    what = _TEST_WORDS[test]
    factor = f"alpha {alpha:g} corrected for {choices} slot choices, {keys_held} key(s) and {tests} test(s)"
    if not opened.triggers_verifiable and not accept_unverifiable:
        reason = f"not accepted as evidence: {opened.reason} (accept it explicitly to count it)"
    elif passed:
        reason = f"{best.matches} of {n} opened items {what}; at least {best.threshold} needed at {factor}"
        if not opened.triggers_verifiable:
            reason += f"; accepted although {opened.reason}"
    else:
        reason = f"only {best.matches} of {n} opened items {what}; {best.threshold} needed at {factor}"
    return CheckResult(
        key_id=vk.key_id,
        evidence=evidence,
        alpha=alpha,
        slot_choices=choices,
        keys_held=keys_held,
        p_value_corrected=corrected,
        triggers_verifiable=opened.triggers_verifiable,
        accepted_unverifiable=accept_unverifiable,
        indices=opened.indices,
        challenge_digest=challenge.digest,
        reason=reason,
        signed_by=proof.signer,
        label_free=free,
        test=test,
    )


_TEST_WORDS = {
    "labels": "answered with their key label",
    "label-free": "had their key label predicted from earlier items' answers (label-free)",
    "either": "answered with their key label, or had it predicted from earlier answers (the better of two)",
}
