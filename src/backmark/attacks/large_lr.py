"""Fine-tuning all layers with a large learning rate and a schedule, and a sweep over the rate.

The paper's fine-tuning used small constant rates. Later work showed that the schedule decides: Chen et
al., "REFIT: A Unified Watermark Removal Framework For Deep Learning Systems With Limited Data" (AsiaCCS
2021, https://arxiv.org/abs/1911.07205), remove backdoor watermarks by fine-tuning with a large initial
learning rate that then decays; SPEC section 6 quotes lr 1e-4 keeping 70-96% trigger accuracy and lr 1e-2
dropping it to chance at a cost of 4.5-8 points of CIFAR-10 accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from backmark.attacks._fit import SCHEDULES, Schedule, fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.registry import register_attack


@register_attack("ft-large-lr")
@dataclass(frozen=True, kw_only=True)
class LargeLRFineTune(WeightAttack):
    """Fine-tune all layers with a large peak learning rate and a decaying schedule.

    Paper: Chen et al., REFIT, AsiaCCS 2021 (https://arxiv.org/abs/1911.07205), without its elastic
    weight consolidation term.

    Arguments:
        epochs (int): training epochs over the attacker's data (default 5; 1..1000).
        lr (float): peak SGD learning rate (default 0.05, what trained the model; (0, 1]).
        schedule (str): ``onecycle`` (default: 15% linear warm-up, then cosine decay to 0), ``cosine``,
            ``step`` (divide by 10 at 50% and 75% of the run) or ``constant``.
        seed (int): seeds the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.

    Example:
        >>> stolen = LargeLRFineTune(lr=0.1, schedule="cosine")(marked, attacker_data)
        >>> sweep = lr_sweep((0.001, 0.01, 0.1), epochs=5)   # one attack per learning rate
    """

    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("lr", "epochs")

    epochs: int = 5
    lr: float = 0.05
    schedule: Schedule = "onecycle"

    def check(self) -> None:
        require_options(self, {**TRAINING, "schedule": SCHEDULES})

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        fit(model, data, epochs=self.epochs, lr=self.lr, schedule=self.schedule, monitor=monitor)
        return model


def lr_sweep(
    lrs: Sequence[float] = (0.001, 0.01, 0.03, 0.1),
    *,
    epochs: int = 5,
    schedule: Schedule = "onecycle",
    seed: int = 0,
) -> list[LargeLRFineTune]:
    """One :class:`LargeLRFineTune` per learning rate in ``lrs``, otherwise alike."""
    return [LargeLRFineTune(epochs=epochs, lr=lr, schedule=schedule, seed=seed) for lr in lrs]
