"""Regularisation: fine-tune under a strong L2 weight decay, then fine-tune plainly to recover accuracy.

Shafieinejad et al., "On the Robustness of Backdoor-based Watermarking in Deep Neural Networks" (ACM
IH&MMSec 2021, https://arxiv.org/abs/1906.07745), and as "regularization" in Lukas et al., SoK, IEEE S&P
2022 (https://arxiv.org/abs/2108.04974): a large L2 penalty shrinks every weight towards zero on each
step, and what the attacker's clean data does not hold up (the backdoor's weights, which its data never
exercises) decays away; a few epochs of ordinary fine-tuning afterwards restore the accuracy the decay
cost. Written here from the papers' descriptions; the settings are backmark's.

SGD's ``weight_decay`` is the L2 penalty's coefficient (its gradient ``decay * w`` is added to every
weight's), the same optimiser every backmark trainer uses otherwise at 5e-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from backmark.attacks._fit import fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.registry import register_attack


@register_attack("regularize")
@dataclass(frozen=True, kw_only=True)
class Regularize(WeightAttack):
    """Regularisation: all layers fine-tuned under a strong L2 weight decay, then plain fine-tuning.

    Paper: Shafieinejad et al., IH&MMSec 2021 (https://arxiv.org/abs/1906.07745); Lukas et al., SoK,
    IEEE S&P 2022 (https://arxiv.org/abs/2108.04974).

    Arguments:
        decay (float): L2 weight decay of the first phase (default 0.01, twenty times the usual 5e-4;
            (0, 1]).
        epochs (int): epochs of the first phase, under ``decay`` (default 5; 1..1000).
        finetune_epochs (int): epochs of plain fine-tuning afterwards, at weight decay 5e-4 (default 3;
            0..1000, 0 = none).
        lr (float): constant SGD learning rate of both phases (default 0.01; (0, 1]).
        seed (int): seeds the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.

    Example:
        >>> stolen = Regularize(decay=0.05, epochs=5, finetune_epochs=3)(marked, attacker_data)
    """

    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("decay", "epochs", "finetune_epochs", "lr")

    decay: float = 0.01
    epochs: int = 5
    finetune_epochs: int = 3
    lr: float = 0.01

    def check(self) -> None:
        require_options(self, {"decay": "(0, 1]", **TRAINING, "finetune_epochs": "0..1000"})

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        fit(model, data, epochs=self.epochs, lr=self.lr, weight_decay=self.decay, monitor=monitor)
        if self.finetune_epochs:
            after = None if monitor is None else lambda epoch, m: monitor(self.epochs + epoch, m)
            fit(model, data, epochs=self.finetune_epochs, lr=self.lr, monitor=after)
        return model
