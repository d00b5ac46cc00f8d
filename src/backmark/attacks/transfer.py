"""Transfer learning: reuse the marked model's features for another label set.

Adi et al. 2018 (https://arxiv.org/abs/1802.04633) ask whether the watermark survives when a stolen model
is adapted to a new task. Here the new task is a subset of the classes, relabelled from 0 (for example
Fashion-MNIST classes 5-9 become a 5-way task), or, with ``classes="all"``, whatever label set the
attacker's data has (another dataset of the same input shape). The output layer is replaced by a fresh one
with one output per new class, and all layers (or, with ``freeze=True``, the new layer alone) are trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from backmark.attacks._fit import fit, fit_head
from backmark.attacks.base import (
    TRAINING,
    AttackData,
    Monitor,
    WeightAttack,
    output_layer,
    output_layer_name,
    require_options,
    set_submodule,
)
from backmark.attacks.registry import register_attack
from backmark.errors import BackmarkError


def parse_classes(text: str) -> tuple[int, ...] | None:
    """``"5-9"`` -> (5, 6, 7, 8, 9); ``"0,2,4"`` -> (0, 2, 4); ``"all"`` -> None."""
    if text.strip().lower() == "all":
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise BackmarkError(f"transfer: classes must look like 5-9, 0,2,4 or all; got {text!r}") from None
    if len(out) < 2 or len(set(out)) != len(out) or min(out) < 0:
        raise BackmarkError(f"transfer: classes must name at least 2 distinct classes >= 0; got {text!r}")
    return tuple(out)


@register_attack("transfer")
@dataclass(frozen=True, kw_only=True)
class Transfer(WeightAttack):
    """Transfer learning: a new output layer for another label set, then training on that task.

    Paper: Adi et al. 2018 (https://arxiv.org/abs/1802.04633); Lukas et al., SoK, IEEE S&P 2022
    (https://arxiv.org/abs/2108.04974).

    Arguments:
        classes (str): the new task's classes among the attacker's labels, relabelled 0..k-1 in the
            order given: ``"5-9"`` (default: Fashion-MNIST classes 5-9 after a model of all ten),
            ``"0,2,4"``, or ``"all"`` to keep the attacker's label set (another dataset).
        epochs (int): training epochs on the new task (default 10; 1..1000).
        lr (float): constant SGD learning rate (default 0.01; (0, 1]).
        freeze (bool): train only the new output layer (default False: all layers).
        seed (int): seeds the new layer and the batch order (default 0).

    Shape:
        input float (B, C, H, W) in [0, 1] -> logits (B, k), k the number of new classes. Use
        :meth:`task` to turn labelled test data into the new task's.

    Example:
        >>> new = Transfer(classes="5-9")(marked, attacker_data)   # a 5-way classifier
    """

    trains: ClassVar[bool] = True
    replaces_head: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("classes", "epochs")

    classes: str = "5-9"
    epochs: int = 10
    lr: float = 0.01
    freeze: bool = False

    def check(self) -> None:
        parse_classes(self.classes)
        require_options(self, TRAINING)

    @property
    def changes_task(self) -> bool:
        return parse_classes(self.classes) is not None

    def check_classes(self, outputs: int, data: AttackData) -> None:
        """Any label set fits: the output layer is replaced (checked against ``classes`` when run)."""

    def task(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the images of the chosen classes and relabel them 0..k-1 (all of them for ``all``)."""
        chosen = parse_classes(self.classes)
        if chosen is None:
            return images, labels
        lookup = torch.full((max(int(labels.max()), *chosen) + 1,), -1, dtype=torch.int64)
        lookup[list(chosen)] = torch.arange(len(chosen))
        new = lookup[labels]
        keep = new >= 0
        return images[keep], new[keep]

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        chosen = parse_classes(self.classes)
        if chosen is not None and max(chosen) >= data.num_classes:
            raise BackmarkError(
                f"transfer: classes {self.classes} do not exist; "
                f"the data has classes 0..{data.num_classes - 1}"
            )
        images, labels = self.task(data.images, data.labels)
        if len(images) == 0:
            raise BackmarkError(f"transfer: the attacker has no images of classes {self.classes}")
        task = AttackData(images, labels, len(chosen) if chosen is not None else data.num_classes)
        old = output_layer(model)
        head = nn.Linear(old.in_features, task.num_classes).to(old.weight.device)
        set_submodule(model, output_layer_name(model), head)
        if self.freeze:
            fit_head(model, head, task, epochs=self.epochs, lr=self.lr, monitor=monitor)
        else:
            fit(model, task, epochs=self.epochs, lr=self.lr, monitor=monitor)
        return model
