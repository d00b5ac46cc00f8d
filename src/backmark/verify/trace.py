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
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from backmark.constants import DEFAULT_ALPHA
from backmark.errors import BackmarkError, first_line
from backmark.keys import MarkingKey, VerificationKey, check_openings
from backmark.targets import Target, as_target, check_target
from backmark.verify import Evidence
from backmark.verify.stats import check_alpha, p_value


@dataclass(frozen=True)
class KeyOutcome:
    """One key's evidence in a trace (tested at ``alpha / keys``)."""

    name: str
    key_id: str
    evidence: Evidence
    p_value: float
    p_value_corrected: float

    @property
    def verified(self) -> bool:
        return self.evidence.verified

    def to_dict(self) -> dict[str, Any]:
        e = self.evidence
        return {
            "name": self.name,
            "key_id": self.key_id,
            "verified": e.verified,
            "matches": e.matches,
            "n": e.n,
            "threshold": e.threshold,
            "p_value": self.p_value,
            "p_value_corrected": self.p_value_corrected,
            "log10_p_value": e.log10_p_value,
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
            "corrected_alpha": self.alpha / len(self.outcomes),
            "queries": self.queries,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def trace(
    model: nn.Module | Target,
    keys: Sequence[tuple[str, MarkingKey, VerificationKey]],
    *,
    alpha: float = DEFAULT_ALPHA,
    seed: int | None = None,
) -> TraceResult:
    """Test every ``(name, mk, vk)`` in ``keys`` against ``model`` with one query (see the module doc).

    ``seed`` fixes the interleaving order (tests); by default it comes from the OS. Every key pair and
    the target are checked before anything is sent.
    """
    check_alpha(alpha)
    if not keys:
        raise BackmarkError("trace needs at least one key")
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
    images = torch.cat([mk.trigger_tensors()[0] for _, mk, _ in keys])
    labels = torch.cat([mk.trigger_tensors()[1] for _, mk, _ in keys])
    owner = torch.cat([torch.full((mk.n,), k, dtype=torch.int64) for k, (_, mk, _) in enumerate(keys)])
    seed = int.from_bytes(os.urandom(8), "little") if seed is None else seed
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    try:
        shuffled = target.predict(images[order])
    except RuntimeError as exc:
        raise BackmarkError(
            f"the model could not answer the keys' images ({first_line(exc, limit=160)}); check that the "
            "model and the keys are for the same input shape"
        ) from exc
    if shuffled.shape != labels.shape or shuffled.is_floating_point():
        raise BackmarkError(f"the model answered {tuple(shuffled.shape)} {shuffled.dtype} values, not labels")
    answers = torch.empty_like(labels)
    answers[order] = shuffled.to(torch.int64)
    level = alpha / len(keys)
    outcomes = []
    for k, (name, mk, vk) in enumerate(keys):
        mine = owner == k
        matches = int((answers[mine] == labels[mine]).sum())
        p = p_value(matches, mk.n, mk.num_classes)
        outcomes.append(
            KeyOutcome(
                name=name,
                key_id=vk.key_id,
                evidence=Evidence.of(matches, n=mk.n, num_classes=mk.num_classes, alpha=level),
                p_value=p,
                p_value_corrected=min(1.0, p * len(keys)),
            )
        )
    return TraceResult(tuple(outcomes), alpha, len(images))
