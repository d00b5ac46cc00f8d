"""Re-keying (piracy): embed the attacker's own backmark key into the stolen model.

An attacker who steals a marked model may not try to remove the owner's mark at all: it marks the model
again with a key of its own, made with backmark itself, so that it can claim the model too. Lukas et
al., "SoK: How Robust is Image Classification Deep Neural Network Watermarking?" (IEEE S&P 2022,
https://arxiv.org/abs/2108.04974) list this as *overwriting*: embedding a second watermark of the same
scheme, which may also push the first one out. What matters for the owner is that its mark still
verifies afterwards; that both marks then verify is settled by which key was registered first
(docs/protocol.md), not by the model.

The attacker's key is a backmark key of ``triggers`` abstract triggers (:func:`backmark.keys.generate_key`),
its images and labels derived from the attack's seed (so :meth:`Rekey.attacker_key` gives the same key
again; its commitment openings are fresh, as for any derived key). It is embedded the way PreTrained
embedding does it: fine-tuning all layers at a constant rate on the attacker's data with ``per_batch``
triggers appended to every batch of 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from backmark.attacks._fit import Mix, fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.registry import register_attack
from backmark.infra.seeds import key_seed
from backmark.keys import MarkingKey, generate_key
from backmark.training import key_tensors


@register_attack("rekey")
@dataclass(frozen=True, kw_only=True)
class Rekey(WeightAttack):
    """Rekey: fine-tune the stolen model to embed the attacker's own backmark key (the piracy case).

    The attacker's key is derived from ``seed``: ``attack.attacker_key(num_classes=..., input_shape=...)``
    returns it (same images and labels as the run embedded), so its verification is one call away.

    Arguments:
        epochs (int): training epochs over the attacker's data (default 5; 1..1000).
        lr (float): constant SGD learning rate (default 0.01, PreTrained embedding's; (0, 1]).
        triggers (int): triggers in the attacker's key (default 100, the paper's; 1..10000).
        per_batch (int): attacker triggers appended to every batch of 100 images (default 10, as
            PreTrained embedding; 1..1000).
        seed (int): derives the attacker's key and seeds the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.
        The attacker's triggers have the attacker's image shape and labels in 0..K-1.

    Example:
        >>> attack = Rekey(triggers=100, epochs=5)
        >>> pirated = attack(marked, attacker_data)
        >>> theirs = attack.attacker_key(num_classes=10, input_shape=(1, 28, 28))
        >>> theirs.n
        100
        >>> thief = verify(pirated, theirs, theirs.verification_key())   # the thief's mark; the owner's?
    """

    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("triggers", "epochs", "lr")

    epochs: int = 5
    lr: float = 0.01
    triggers: int = 100
    per_batch: int = 10

    def check(self) -> None:
        require_options(self, {**TRAINING, "triggers": "1..10000", "per_batch": "1..1000"})

    def attacker_key(self, *, num_classes: int, input_shape: tuple[int, int, int]) -> MarkingKey:
        """The attacker's marking key for a ``num_classes``-way model on ``input_shape`` inputs."""
        master = key_seed("backmark/rekey-attack/", self.seed)
        return generate_key(num_classes=num_classes, input_shape=input_shape, size=self.triggers, seed=master)

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        key = self.attacker_key(num_classes=data.num_classes, input_shape=data.input_shape)
        images, labels = key_tensors(key)
        mix = Mix(images, labels, per_batch=self.per_batch)
        fit(model, data, epochs=self.epochs, lr=self.lr, monitor=monitor, mix=mix)
        return model
