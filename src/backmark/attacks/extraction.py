"""Model extraction (retraining from hard labels): train a fresh model on the suspect's top-1 answers.

Tramèr et al., "Stealing Machine Learning Models via Prediction APIs" (USENIX Security 2016,
https://arxiv.org/abs/1609.02943). The attacker queries the marked model on its own images, keeps only the
top-1 label of each answer, and trains a model of its choice from scratch on those pairs. The trigger set
is out of distribution, so nothing in the queries teaches the student the key's labels; Lukas et al.
(SoK, IEEE S&P 2022, https://arxiv.org/abs/2108.04974) found that this removes the backdoor watermark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from backmark.attacks._fit import SCHEDULES, Schedule, fit
from backmark.attacks.base import TRAINING, AttackData, LabelAttack, Monitor, require, require_options
from backmark.attacks.registry import register_attack
from backmark.errors import BackmarkError
from backmark.models import create_model, list_models
from backmark.models.normalization import channel_stats
from backmark.targets import Target

QUERY_BATCH = 500


def query_labels(oracle: Target, data: AttackData) -> torch.Tensor:
    """The oracle's top-1 answer for every attacker image: int64 (N,)."""
    out = [
        oracle.predict(data.pixels(start, start + QUERY_BATCH)).to(torch.int64)
        for start in range(0, len(data.images), QUERY_BATCH)
    ]
    return torch.cat(out)


def check_student(name: str, arch: str, width: int | None) -> None:
    """The checks of a student's ``arch`` and ``width`` options (extraction and distillation share them)."""
    names = [spec.name for spec in list_models()]
    require(
        arch == "same" or arch in names,
        f"{name}: arch must be same or one of {', '.join(names)}; got {arch!r}",
    )
    require(width is None or width >= 1, f"{name}: width must be at least 1")
    require(arch != "same" or width is None, f"{name}: width needs a named arch")


def build_student(
    name: str, arch: str, width: int | None, template: nn.Module, data: AttackData, num_classes: int
) -> nn.Module:
    """The untrained student: ``template`` (the suspect's architecture, fresh weights) for ``same``,
    else a fresh registered architecture normalised by the attacker's channel statistics."""
    if arch == "same":
        return template
    mean, std = channel_stats(data.images)
    options = {} if width is None else {"width": width}
    try:
        return create_model(
            arch, num_classes=num_classes, input_shape=data.input_shape, mean=mean, std=std, **options
        )
    except RuntimeError as exc:
        raise BackmarkError(f"{name}: cannot build {arch} for the data: {exc}") from None


@register_attack("extract")
@dataclass(frozen=True, kw_only=True)
class Extraction(LabelAttack):
    """Model extraction: train a fresh model on the attacker's images labelled by the suspect's top-1.

    Paper: Tramèr et al., USENIX Security 2016 (https://arxiv.org/abs/1609.02943); as a watermark removal
    attack ("retraining"), Lukas et al., SoK 2022 (https://arxiv.org/abs/2108.04974). Label-only access:
    the attacker's own labels are not used.

    Arguments:
        arch (str): the student's architecture: ``same`` (default: the suspect's, freshly initialised;
            the attacker is assumed to know it) or a registered name (``cnn``, ``preact-resnet18``).
        width (int | None): the ``width`` option of a named architecture (default None: its default).
        epochs (int): training epochs (default 10; 1..1000).
        lr (float): peak SGD learning rate (default 0.05; (0, 1]).
        schedule (str): learning-rate schedule (default ``onecycle``; also cosine, step, constant).
        seed (int): seeds the student's initialisation and the batch order (default 0).

    Shape:
        images float (B, C, H, W) in [0, 1] -> logits (B, K), K the suspect's number of classes.

    Example:
        >>> student = Extraction(arch="preact-resnet18", width=16)(marked, attacker_data)
    """

    trains: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("arch", "epochs")

    arch: str = "same"
    width: int | None = None
    epochs: int = 10
    lr: float = 0.05
    schedule: Schedule = "onecycle"

    def check(self) -> None:
        check_student(self.name, self.arch, self.width)
        require_options(self, {**TRAINING, "schedule": SCHEDULES})

    def student(self, template: nn.Module, data: AttackData, num_classes: int) -> nn.Module:
        """The untrained student: the template, or a fresh registered architecture."""
        return build_student(self.name, self.arch, self.width, template, data, num_classes)

    def steal(
        self, oracle: Target, template: nn.Module, data: AttackData, monitor: Monitor | None
    ) -> nn.Module:
        labels = query_labels(oracle, data)
        num_classes = max(data.num_classes, int(labels.max()) + 1)
        student = self.student(template, data, num_classes)
        stolen = AttackData(data.images, labels, num_classes)
        fit(student, stolen, epochs=self.epochs, lr=self.lr, schedule=self.schedule, monitor=monitor)
        return student
