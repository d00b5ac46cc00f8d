"""Adversarial training: fine-tune on the attacker's data and on adversarial examples made from it.

Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks" (ICLR 2018, https://arxiv.org/abs/1706.06083): train on the worst-case perturbations, within an
L-infinity ball of radius ``eps``, that projected gradient descent (PGD) finds against the current model;
one step without a random start is Goodfellow et al.'s FGSM (https://arxiv.org/abs/1412.6572). As a
watermark removal attack (Lukas et al., SoK, IEEE S&P 2022, https://arxiv.org/abs/2108.04974): making
the model's answers stable around its training data also reshapes its decision boundaries elsewhere, and
a backdoor, a set of small regions with other labels, may not survive it.

Every batch of attacker images gets, before its step, one adversarial copy of each image under the same
label, computed against the model as it stands (in eval mode, so batch-norm statistics and dropout do not
see the search); the step trains on both, which keeps clean accuracy closer than adversarial examples
alone would. PGD: a random start uniform in the ball, ``steps`` signed-gradient steps of
``2.5 * eps / steps`` (Madry et al.'s rule), each projected back into the ball and onto [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from backmark.attacks._fit import fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.overwrite import generator
from backmark.attacks.registry import register_attack
from backmark.models.modes import evaluating
from backmark.training import Batch


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, gen: torch.Generator
) -> torch.Tensor:
    """L-infinity PGD on float ``x`` (B, C, H, W) in [0, 1] against labels ``y`` (B,): the adversarial images.

    ``steps`` = 1 is FGSM (no random start, one step of ``eps``). The model's parameters get no gradient.
    """
    if steps == 1:
        adv, size = x.detach().clone(), eps
    else:
        start = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
        adv, size = (x.detach() + start.to(x.device, x.dtype)).clamp(0, 1), 2.5 * eps / steps
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), y), [adv])
        with torch.no_grad():
            adv = adv + size * grad.sign()
            adv = torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


@register_attack("adv-train")
@dataclass(frozen=True, kw_only=True)
class AdvTrain(WeightAttack):
    """Adversarial training: fine-tune all layers on each batch and its PGD adversarial copy.

    Paper: Madry et al., ICLR 2018 (https://arxiv.org/abs/1706.06083); as a removal attack, Lukas et al.,
    SoK, IEEE S&P 2022 (https://arxiv.org/abs/2108.04974).

    Arguments:
        eps (float): L-infinity radius of the perturbations, in [0, 1] pixel units (default 0.03, about
            8/255; (0, 1]).
        steps (int): PGD steps per batch (default 3; 1 = FGSM; 1..100).
        epochs (int): training epochs over the attacker's data (default 3; 1..1000).
        lr (float): constant SGD learning rate (default 0.01; (0, 1]).
        seed (int): seeds the random starts, the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.
        Each training step sees 2B images: the batch and its adversarial copy.

    Example:
        >>> stolen = AdvTrain(eps=0.03, steps=3, epochs=3)(marked, attacker_data)
    """

    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("eps", "steps", "epochs", "lr")

    eps: float = 0.03
    steps: int = 3
    epochs: int = 3
    lr: float = 0.01

    def check(self) -> None:
        require_options(self, {"eps": "(0, 1]", "steps": "1..100", **TRAINING})

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        gen = generator()

        def with_adversarial(batch: Batch) -> Batch:
            x, y, total = batch
            with evaluating(model):
                adv = pgd(model, x, y, eps=self.eps, steps=self.steps, gen=gen)
            return Batch(torch.cat([x, adv]), torch.cat([y, y]), 2 * total)

        fit(model, data, epochs=self.epochs, lr=self.lr, transform=with_adversarial, monitor=monitor)
        return model
