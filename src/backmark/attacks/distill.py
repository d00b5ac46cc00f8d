"""Knowledge distillation: train a fresh student on the suspect's soft outputs (white-box retraining).

Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network" (2015,
https://arxiv.org/abs/1503.02531): a student learns from a teacher's whole output distribution, softened
by a temperature T (``softmax(logits / T)``), which carries more than its top-1 label. As a watermark
removal attack (Lukas et al., SoK, IEEE S&P 2022, https://arxiv.org/abs/2108.04974, "retraining" and
"distillation"): the attacker holds the marked model and its own unlabelled images, and trains a model
of its choice from fresh weights to match the suspect on those images. The trigger set is out of
distribution, so nothing in the attacker's images asks the student to reproduce the key's labels.

Beside the label-only model extraction (``extract``), this attacker reads the suspect's logits. The loss
is Hinton's: ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, the ``T^2`` keeping its gradients
on the scale of cross-entropy's. The teacher's targets are computed once, in eval mode, over the
attacker's images (training uses no augmentation, so they are exact for every batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from backmark.attacks._fit import SCHEDULES, Schedule, fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, reinitialised, require_options
from backmark.attacks.extraction import QUERY_BATCH, build_student, check_student
from backmark.attacks.registry import register_attack
from backmark.models.modes import evaluating
from backmark.training import Loss, model_device


@torch.no_grad()
def soft_targets(teacher: nn.Module, data: AttackData, temperature: float) -> torch.Tensor:
    """``softmax(teacher(x) / temperature)`` for every attacker image (eval mode): float (N, K) on the CPU."""
    device = model_device(teacher)
    with evaluating(teacher):
        out = [
            (teacher(data.pixels(start, start + QUERY_BATCH).to(device)).float() / temperature)
            .softmax(1)
            .cpu()
            for start in range(0, len(data.images), QUERY_BATCH)
        ]
    return torch.cat(out)


def distillation_loss(temperature: float) -> Loss:
    """``T^2 * KL(targets || softmax(logits / T))``, batch mean; ``targets`` are probabilities (B, K)."""

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_student = F.log_softmax(logits.float() / temperature, dim=1)
        return F.kl_div(log_student, targets, reduction="batchmean") * temperature**2

    return loss


@register_attack("distill")
@dataclass(frozen=True, kw_only=True)
class Distill(WeightAttack):
    """Distill: a fresh student trained on the suspect's temperature-softened outputs (KL loss).

    Paper: Hinton et al. 2015 (https://arxiv.org/abs/1503.02531); as a removal attack, Lukas et al., SoK,
    IEEE S&P 2022 (https://arxiv.org/abs/2108.04974). White-box: it reads the suspect's logits on the
    attacker's images; the attacker's own labels are not used.

    Arguments:
        arch (str): the student's architecture: ``same`` (default: the suspect's, freshly initialised)
            or a registered name (``cnn``, ``preact-resnet18``).
        width (int | None): the ``width`` option of a named architecture (default None: its default).
        temperature (float): the softmax temperature T of teacher and student (default 4.0; (0, 100]).
        epochs (int): training epochs (default 10, as extraction; 1..1000).
        lr (float): peak SGD learning rate (default 0.05; (0, 1]).
        schedule (str): learning-rate schedule (default ``onecycle``; also cosine, step, constant).
        seed (int): seeds the student's initialisation, the batch order and dropout (default 0).

    Shape:
        images float (B, C, H, W) in [0, 1] -> logits (B, K), K the suspect's number of classes.

    Example:
        >>> student = Distill(temperature=4.0, epochs=10)(marked, attacker_data)
    """

    trains: ClassVar[bool] = True
    starts_fresh: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("arch", "temperature", "epochs")

    arch: str = "same"
    width: int | None = None
    temperature: float = 4.0
    epochs: int = 10
    lr: float = 0.05
    schedule: Schedule = "onecycle"

    def check(self) -> None:
        check_student(self.name, self.arch, self.width)
        require_options(self, {"temperature": "(0, 100]", **TRAINING, "schedule": SCHEDULES})

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        targets = soft_targets(model, data, self.temperature)
        student = build_student(
            self.name, self.arch, self.width, reinitialised(model), data, int(targets.shape[1])
        )
        fit(
            student, data, epochs=self.epochs, lr=self.lr, schedule=self.schedule, labels=targets,
            loss=distillation_loss(self.temperature), monitor=monitor,
        )  # fmt: skip
        return student
