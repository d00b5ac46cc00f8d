"""Weight shifting: perturb every layer's weights in proportion to their spread, then fine-tune.

Lukas et al., "SoK: How Robust is Image Classification Deep Neural Network Watermarking?" (IEEE S&P 2022,
https://arxiv.org/abs/2108.04974), section on weight shifting: the attacker moves each layer's weights by
a perturbation scaled to that layer's own weights, which knocks a backdoor out of the narrow region that
encodes it, then fine-tunes on its own data to win the task back, with a penalty that keeps the weights
from drifting back to where they were. Written here from that description, not from the SoK's code.

backmark's version: every convolution and linear weight tensor ``w`` (the tensors magnitude pruning acts
on; biases and batch norm are left alone) gets ``shift * std(w) * z`` added, ``z`` standard Gaussian noise
drawn from the attack's seed, so ``shift`` is the size of the move relative to the layer's weights (its
norm is about ``shift`` times the layer's own, for weights of mean near zero). Fine-tuning then trains all
layers on the attacker's data with cross-entropy plus ``keep`` times the penalty
``mean over layers of relu(1 - |w - w0| / |s|)^2``, where ``w0`` are the original weights and ``s`` the
shift: zero while a layer stays at least as far from its original weights as the shift moved it, growing
as it moves back. ``keep=0`` is plain fine-tuning after the shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from backmark.attacks._fit import fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.overwrite import generator
from backmark.attacks.pruning import prunable
from backmark.attacks.registry import register_attack
from backmark.training import Loss, cross_entropy


@torch.no_grad()
def shift_weights(weights: list[torch.Tensor], shift: float, gen: torch.Generator) -> list[torch.Tensor]:
    """Add ``shift * std(w) * N(0, 1)`` to each tensor in place (noise drawn on the CPU from ``gen``).

    Returns the originals, as copies.
    """
    originals = [w.detach().clone() for w in weights]
    for w in weights:
        noise = torch.randn(w.shape, generator=gen).to(w.device, w.dtype)
        w.add_(noise * (shift * w.std(correction=0)))
    return originals


def keep_shift_loss(
    weights: list[torch.Tensor], originals: list[torch.Tensor], keep: float, base: Loss = cross_entropy
) -> Loss:
    """``base`` plus ``keep * mean(relu(1 - |w - w0| / |s|)^2)`` over the layers (module docstring).

    ``s`` is each layer's shift as it stands when this is called (``w - w0``, right after the shift).
    """
    if keep == 0:
        return base
    sizes = [(w.detach() - w0).norm().clamp_min(1e-12) for w, w0 in zip(weights, originals, strict=True)]

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        back = torch.stack(
            [
                torch.relu(1 - (w - w0).norm() / size) ** 2
                for w, w0, size in zip(weights, originals, sizes, strict=True)
            ]
        )
        return base(logits, targets) + keep * back.mean()

    return loss


@register_attack("weight-shift")
@dataclass(frozen=True, kw_only=True)
class WeightShift(WeightAttack):
    """Weight shifting: add Gaussian noise scaled to each layer's weight spread, then fine-tune all layers.

    Paper: Lukas et al., SoK, IEEE S&P 2022 (https://arxiv.org/abs/2108.04974), weight shifting; the
    penalty against moving back is the module docstring's.

    Arguments:
        shift (float): the noise's standard deviation relative to each weight tensor's own (default 0.5;
            (0, 10]).
        epochs (int): fine-tuning epochs over the attacker's data after the shift (default 5; 1..1000).
        lr (float): constant SGD learning rate (default 0.01; (0, 1]).
        keep (float): weight of the penalty on moving back towards the original weights (default 1.0;
            0 turns it off; [0, 1000]).
        seed (int): seeds the noise, the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.

    Example:
        >>> stolen = WeightShift(shift=1.0, epochs=5)(marked, attacker_data)
    """

    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("shift", "epochs", "lr")

    shift: float = 0.5
    epochs: int = 5
    lr: float = 0.01
    keep: float = 1.0

    def check(self) -> None:
        require_options(self, {"shift": "(0, 10]", **TRAINING, "keep": "[0, 1000]"})

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        weights = prunable(model)
        originals = shift_weights(weights, self.shift, generator())
        loss = keep_shift_loss(weights, originals, self.keep)
        fit(model, data, epochs=self.epochs, lr=self.lr, loss=loss, monitor=monitor)
        return model
