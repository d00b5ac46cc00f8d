"""The attacker's training loops: all layers on images, or the output layer alone on cached features.

Kept apart from :mod:`backmark.embed.trainer` because an attacker trains without triggers, sometimes only
some parameters, needs a per-epoch hook for measurement and never sees a test set. Batches come from the
same :class:`~backmark.embed.trainer.InMemoryBatches` (uint8 in memory, float [0, 1] per batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from backmark.attacks.base import AttackData, Monitor, model_device
from backmark.embed.trainer import InMemoryBatches
from backmark.models.layout import to_training_layout
from backmark.models.modes import evaluating

Schedule = Literal["constant", "step", "cosine", "onecycle"]
SCHEDULES: tuple[Schedule, ...] = ("constant", "step", "cosine", "onecycle")

BATCH_SIZE = 100  # images per step, as in the reference code
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


def lr_factor(schedule: Schedule, step: int, total: int) -> float:
    """Multiplier of the peak learning rate at ``step`` of ``total`` steps.

    constant: 1; step: divided by 10 at half and again at three quarters of the run; cosine: cosine decay
    to 0; onecycle: linear warm-up over the first 15% of steps, then cosine decay to 0.
    """
    progress = step / max(total, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01
    warm = 0.15 if schedule == "onecycle" else 0.0
    if progress < warm:
        return (step + 1) / (warm * total)
    return 0.5 * (1.0 + math.cos(math.pi * min((progress - warm) / (1.0 - warm), 1.0)))


def _sgd(params: list[nn.Parameter], lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)


def fit(
    model: nn.Module,
    data: AttackData,
    *,
    epochs: int,
    lr: float,
    schedule: Schedule = "constant",
    labels: torch.Tensor | None = None,
    after_step: Callable[[], None] | None = None,
    monitor: Monitor | None = None,
) -> None:
    """Train every parameter of ``model`` in place with SGD (Nesterov momentum 0.9, weight decay 5e-4).

    ``labels`` (int64 (N,)) replaces ``data.labels`` (model extraction trains on the suspect's answers);
    ``after_step`` runs after every optimiser step (fine-pruning re-applies its mask there).
    """
    gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
    batches = InMemoryBatches(
        data.images, data.labels if labels is None else labels, batch_size=BATCH_SIZE, generator=gen
    )
    device = model_device(model)
    fmt = to_training_layout(model)  # channels-last where safe: faster on CPU
    optimizer = _sgd([p for p in model.parameters() if p.requires_grad], lr)
    total, step = epochs * len(batches), 0
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in batches:
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(schedule, step, total)
            loss = F.cross_entropy(model(x.to(device).contiguous(memory_format=fmt)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            step += 1
            if after_step is not None:
                after_step()
        if monitor is not None:
            monitor(epoch, model)
    model.eval()


@torch.inference_mode()
def head_inputs(model: nn.Module, head: nn.Linear, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """What ``head`` receives for every image (uint8 (N, C, H, W)): float (N, head.in_features).

    The model runs in eval mode (training flags restored), so these are the features a frozen
    feature extractor gives.
    """
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().cpu()))
    device = model_device(model)
    try:
        with evaluating(model):
            for start in range(0, len(images), batch):
                model(images[start : start + batch].float().div(255.0).to(device))
    finally:
        hook.remove()
    return torch.cat(captured).flatten(1)


def fit_head(
    model: nn.Module,
    head: nn.Linear,
    data: AttackData,
    *,
    epochs: int,
    lr: float,
    schedule: Schedule = "constant",
    monitor: Monitor | None = None,
) -> None:
    """Train only ``head`` (the output layer of ``model``) on the frozen features of ``data``.

    The rest of the model is left exactly as it was (batch-norm statistics included), which is what
    FTLL and RTLL mean; computing the features once makes each epoch cost a few milliseconds.
    """
    features = head_inputs(model, head, data.images)
    device = head.weight.device
    gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
    optimizer = _sgd(list(head.parameters()), lr)
    steps_per_epoch = math.ceil(len(features) / BATCH_SIZE)
    total, step = epochs * steps_per_epoch, 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(features), generator=gen)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(schedule, step, total)
            loss = F.cross_entropy(head(features[idx].to(device)), data.labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            step += 1
        if monitor is not None:
            monitor(epoch, model)
