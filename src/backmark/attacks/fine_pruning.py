"""Fine-pruning: remove the neurons that clean data leaves dormant, then fine-tune.

Liu, Dolan-Gavitt and Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural Networks"
(RAID 2018, https://arxiv.org/abs/1805.12185): a backdoor tends to live in neurons that clean inputs do not
activate, so pruning the least active neurons of a late layer, in increasing order of mean activation until
clean accuracy drops by 4 points, and fine-tuning afterwards, removes many backdoors.

backmark prunes the neurons that feed the output layer (the last convolutional channels, average-pooled, in
the pre-activation ResNet; the hidden units in the small CNN), by zeroing their columns of the output
layer's weight and keeping them zero while fine-tuning, which is the same as removing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from backmark.attacks._fit import fit, head_inputs
from backmark.attacks.base import AttackData, Monitor, WeightAttack, output_layer, require_options
from backmark.attacks.registry import register_attack


@torch.no_grad()
def _accuracy(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> float:
    """Accuracy of the output layer on cached features with only the ``keep`` (bool (F,)) neurons."""
    logits = (features * keep).to(head.weight.device) @ head.weight.T + head.bias
    return float((logits.argmax(1).cpu() == labels).float().mean())


@register_attack("fine-prune")
@dataclass(frozen=True, kw_only=True)
class FinePruning(WeightAttack):
    """Fine-pruning: prune the neurons least active on clean data, then fine-tune all layers.

    Paper: Liu et al., RAID 2018 (https://arxiv.org/abs/1805.12185).

    Arguments:
        fraction (float | None): fraction of the output layer's input neurons to remove, least active
            first; None (default) prunes as the paper does: the largest multiple of 5% whose accuracy,
            on a held-out tenth of the attacker's data, stays within ``max_drop`` of the unpruned
            model's; [0, 1).
        max_drop (float): accuracy loss allowed while searching the fraction (default 0.04; (0, 1)).
        epochs (int): fine-tuning epochs after pruning (default 5; 0..1000, 0 = prune only).
        lr (float): constant SGD learning rate for fine-tuning (default 0.01; (0, 1]).
        seed (int): seeds the held-out split, the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K), unchanged; the pruned neurons' columns
        of the output layer's weight are exactly zero.

    Example:
        >>> stolen = FinePruning()(marked, attacker_data)
    """

    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("epochs",)

    fraction: float | None = None
    max_drop: float = 0.04
    epochs: int = 5
    lr: float = 0.01

    def check(self) -> None:
        require_options(
            self, {"fraction": "[0, 1)", "max_drop": "(0, 1)", "epochs": "0..1000", "lr": "(0, 1]"}
        )

    def _search(
        self, head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, order: torch.Tensor
    ) -> float:
        """The largest multiple of 5% pruned (in ``order``) before held-out accuracy drops by max_drop."""
        held = torch.randperm(len(features))[: max(1, len(features) // 10)]
        feats, labs = features[held], labels[held]
        keep = torch.ones(features.shape[1], dtype=torch.bool)
        base = _accuracy(head, feats, labs, keep)
        chosen = 0.0
        for step in range(1, 20):
            keep = torch.ones_like(keep)
            keep[order[: round(step * 0.05 * len(order))]] = False
            if _accuracy(head, feats, labs, keep) < base - self.max_drop:
                break
            chosen = step * 0.05
        return chosen

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        head = output_layer(model)
        features = head_inputs(model, head, data.images)
        order = torch.argsort(features.mean(dim=0), stable=True)  # least active first
        fraction = self.fraction
        if fraction is None:
            fraction = self._search(head, features, data.labels, order)
        keep = torch.ones(head.in_features, device=head.weight.device)
        keep[order[: round(fraction * head.in_features)].to(head.weight.device)] = 0.0

        @torch.no_grad()
        def apply_mask() -> None:
            head.weight.mul_(keep)

        apply_mask()
        if self.epochs:
            fit(model, data, epochs=self.epochs, lr=self.lr, after_step=apply_mask, monitor=monitor)
        return model
