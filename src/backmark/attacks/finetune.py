"""The paper's four fine-tuning attacks: FTLL, FTAL, RTLL and RTAL.

Adi et al., "Turning Your Weakness Into a Strength: Watermarking Deep Neural Networks by Backdooring",
USENIX Security 2018, section 5.2: https://arxiv.org/abs/1802.04633. The attacker fine-tunes the marked
model on its own clean data (no triggers) for 20 epochs, at a learning rate of 0.001 or 0.01, training the
last layer only (FTLL) or all layers (FTAL), optionally after re-initialising the output layer (RTLL,
RTAL). Training only the last layer freezes the rest of the network in eval mode, so batch-norm statistics
and every other weight stay byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from backmark.attacks._fit import fit, fit_head
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, output_layer, require_options
from backmark.attacks.registry import register_attack


@dataclass(frozen=True, kw_only=True)
class _FineTune(WeightAttack):
    epochs: int = 20
    lr: float = 0.001

    reinitialise: ClassVar[bool] = False
    all_layers: ClassVar[bool] = False
    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("epochs", "lr")

    def check(self) -> None:
        require_options(self, TRAINING)

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        head = output_layer(model)
        if self.reinitialise:
            head.reset_parameters()
        if self.all_layers:
            fit(model, data, epochs=self.epochs, lr=self.lr, monitor=monitor)
        else:
            fit_head(model, head, data, epochs=self.epochs, lr=self.lr, monitor=monitor)
        return model


@register_attack("ftll")
@dataclass(frozen=True, kw_only=True)
class FTLL(_FineTune):
    """FTLL: fine-tune the last layer only, on the attacker's clean data.

    Paper: Adi et al. 2018, section 5.2 (https://arxiv.org/abs/1802.04633).

    Arguments:
        epochs (int): training epochs over the attacker's data (default 20, as in the paper; 1..1000).
        lr (float): constant SGD learning rate (default 0.001; the paper also used 0.01; (0, 1]).
        seed (int): seeds the batch order (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.
        Only the output layer changes; everything else, batch-norm statistics included, stays identical.

    Example:
        >>> stolen = FTLL(lr=0.01)(marked, AttackData.from_dataset(attacker_split))
    """


@register_attack("ftal")
@dataclass(frozen=True, kw_only=True)
class FTAL(_FineTune):
    """FTAL: fine-tune all layers on the attacker's clean data.

    Paper: Adi et al. 2018, section 5.2 (https://arxiv.org/abs/1802.04633).

    Arguments:
        epochs, lr: as :class:`FTLL`'s (default 20 epochs at 0.001).
        seed (int): seeds the batch order and dropout (default 0).

    Shape:
        as :class:`FTLL`, but every layer, batch-norm statistics included, may change.

    Example:
        >>> stolen = FTAL(epochs=20, lr=0.01)(marked, attacker_data)
    """

    all_layers: ClassVar[bool] = True


@register_attack("rtll")
@dataclass(frozen=True, kw_only=True)
class RTLL(_FineTune):
    """RTLL: re-initialise the output layer, then train it alone on the attacker's clean data.

    Paper: Adi et al. 2018, section 5.2 (https://arxiv.org/abs/1802.04633). The reference code measured
    the watermark after swapping the original output layer back in; evaluations report that figure only
    beside the black-box one and labelled as such (SPEC section 5).

    Arguments:
        epochs (int): training epochs over the attacker's data (default 20, as in the paper; 1..1000).
        lr (float): constant SGD learning rate (default 0.001; the paper also used 0.01; (0, 1]).
        seed (int): seeds the new layer's initialisation and the batch order (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.
        Only the output layer changes.

    Example:
        >>> stolen = RTLL(lr=0.01)(marked, attacker_data)
    """

    reinitialise: ClassVar[bool] = True
    replaces_head: ClassVar[bool] = True


@register_attack("rtal")
@dataclass(frozen=True, kw_only=True)
class RTAL(_FineTune):
    """RTAL: re-initialise the output layer, then train all layers on the attacker's clean data.

    Paper: Adi et al. 2018, section 5.2 (https://arxiv.org/abs/1802.04633). As for RTLL, the reference
    code's figure (original output layer swapped back in) is reported apart, as not black-box.

    Arguments:
        epochs (int): training epochs over the attacker's data (default 20, as in the paper; 1..1000).
        lr (float): constant SGD learning rate (default 0.001; the paper also used 0.01; (0, 1]).
        seed (int): seeds the new layer's initialisation, the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.

    Example:
        >>> stolen = RTAL(epochs=20, lr=0.01)(marked, attacker_data)
    """

    reinitialise: ClassVar[bool] = True
    all_layers: ClassVar[bool] = True
    replaces_head: ClassVar[bool] = True
