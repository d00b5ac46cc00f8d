"""Traitor tracing: which licensee's copy is this? One query with every licensee's triggers.

A vendor who sells copies of one model marks each copy with a key of its own (PreTrained embedding from
one base model). Given a suspect, :func:`trace` checks every key pair, then queries the suspect *once*
with all keys' triggers in one random order (so no key's triggers stand out as a block; wrap the target
in decoys to hide them among ordinary images as well), and applies the exact test to each key.

Testing K keys is K tests: the chance that some key of a model none of them marked passes at level
alpha is up to K * alpha. So each key is tested at alpha / K (Bonferroni), its p-value reported both raw
and multiplied by K, and the licensee named is the one whose key verifies at that level. The keys'
labels are drawn independently, so another licensee's copy answers a key's labels by chance (1/C each):
a copy marked with one key is no more likely to match another key than a clean model is.

By default each key is decided by the labels or the label-free test (docs/label-free.md) on the same
answers, each at alpha / (2K), so a copy whose classes were renamed is still traced (the suspect must
answer within the keys' classes); ``test="labels"`` decides by the labels test alone at alpha / K.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from backmark.constants import DEFAULT_ALPHA, DEFAULT_VERIFY_TEST, VerifyTest
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey, VerificationKey, check_openings
from backmark.targets import Target, as_target, check_target
from backmark.verify import Evidence, query_labels
from backmark.verify.decision import TEST_PIECES, Decision, piece_level
from backmark.verify.labelfree import label_free_evidence, mark_decision


@dataclass(frozen=True)
class KeyOutcome:
    """One key's evidence in a trace: the labels test (``evidence``) and the label-free test on the same
    answers, each at ``alpha / (keys * tests)``, ``tests`` the number that decide under ``test``."""

    name: str
    key_id: str
    evidence: Evidence
    keys: int  # how many keys the trace tested
    label_free: Evidence | None = None  # the label-free test on the same answers
    test: VerifyTest = "labels"

    @property
    def decision(self) -> Decision:
        """The key's claim: its decisive tests at the corrected level, the other one reported."""
        return mark_decision(self.test, self.evidence, self.label_free)

    @property
    def verified(self) -> bool:
        return self.decision.verified

    @property
    def p_value(self) -> float:
        """The smallest p-value of the decisive tests."""
        return min(p.p_value for p in self.decision.pieces)

    @property
    def p_value_corrected(self) -> float:
        """The smallest decisive p-value times the keys and the tests (Bonferroni), at most 1."""
        return min(1.0, self.p_value * self.keys * len(self.decision.pieces))

    def to_dict(self) -> dict[str, Any]:
        claim = self.decision.to_dict()
        return {
            "name": self.name,
            "key_id": self.key_id,
            "verified": self.verified,
            "test": self.test,
            "p_value_corrected": self.p_value_corrected,
            "level": claim["level"],
            "passed": claim["passed"],
            "evidence": claim["evidence"],
        }


@dataclass(frozen=True)
class TraceResult:
    """Every key's outcome, and the licensee named: the one key that verifies, else None."""

    outcomes: tuple[KeyOutcome, ...]
    alpha: float
    queries: int

    @property
    def verified(self) -> tuple[KeyOutcome, ...]:
        return tuple(o for o in self.outcomes if o.verified)

    @property
    def named(self) -> str | None:
        found = self.verified
        return found[0].name if len(found) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "named": self.named,
            "verified_keys": [o.name for o in self.verified],
            "alpha": self.alpha,
            "keys": len(self.outcomes),
            "corrected_alpha": self.alpha / len(self.outcomes),  # per key, shared by its tests
            "queries": self.queries,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def trace(
    model: nn.Module | Target,
    keys: Sequence[tuple[str, MarkingKey, VerificationKey]],
    *,
    alpha: float = DEFAULT_ALPHA,
    seed: int | None = None,
    test: VerifyTest = DEFAULT_VERIFY_TEST,
) -> TraceResult:
    """Test every ``(name, mk, vk)`` in ``keys`` against ``model`` with one query (see the module doc).

    ``seed`` fixes the interleaving order (tests); by default it comes from the OS. Every key pair and
    the target are checked before anything is sent.
    """
    if not keys:
        raise BackmarkError("trace needs at least one key")
    if test not in TEST_PIECES:
        raise BackmarkError(f"test must be one of {', '.join(TEST_PIECES)}, got {test!r}")
    level = piece_level(alpha, len(keys) * TEST_PIECES[test])  # each key's tests at alpha / (K t)
    names = [name for name, _, _ in keys]
    if len(set(names)) != len(names):
        twice = sorted(n for n in names if names.count(n) > 1)[0]
        raise BackmarkError(f"two keys have the same name ({twice}); name them apart")
    first = keys[0][1]
    for name, mk, vk in keys:
        if (mk.input_shape, mk.num_classes) != (first.input_shape, first.num_classes):
            raise BackmarkError(
                f"key {name} is for {mk.num_classes} classes of {'x'.join(map(str, mk.input_shape))} images, "
                f"key {keys[0][0]} for {first.num_classes} of {'x'.join(map(str, first.input_shape))}: "
                "trace keys of one model only"
            )
        check_openings(mk, vk)
    target = as_target(model)
    check_target(target, input_shape=first.input_shape, num_classes=first.num_classes)
    triggers = [mk.trigger_tensors() for _, mk, _ in keys]
    images = torch.cat([x for x, _ in triggers])
    labels = torch.cat([y for _, y in triggers])
    owner = torch.cat([torch.full((mk.n,), k, dtype=torch.int64) for k, (_, mk, _) in enumerate(keys)])
    seed = int.from_bytes(os.urandom(8), "little") if seed is None else seed
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    shuffled = query_labels(
        target, images[order], num_classes=first.num_classes, what="the keys' images", noun="triggers"
    )
    answers = torch.empty_like(labels)
    answers[order] = shuffled
    outcomes = []
    for k, (name, mk, vk) in enumerate(keys):
        mine = owner == k
        matches = int((answers[mine] == labels[mine]).sum())
        evidence = Evidence.of(
            matches, n=mk.n, num_classes=mk.num_classes, alpha=level, null_classes=mk.null_classes
        )
        free = label_free_evidence(
            answers[mine].tolist(),
            labels[mine].tolist(),
            num_classes=mk.num_classes,
            alpha=level,
            null_classes=mk.null_classes,
        )
        outcomes.append(
            KeyOutcome(
                name=name, key_id=vk.key_id, evidence=evidence, keys=len(keys), label_free=free, test=test
            )
        )
    return TraceResult(tuple(outcomes), alpha, len(images))
