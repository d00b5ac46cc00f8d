"""The attacker's training: all layers on images, or the output layer alone on cached features.

Both run the one training loop of :mod:`backmark.training` (batches, schedule, step), on the device the
model is on. An attacker trains without the owner's triggers and without a test set, sometimes only some
parameters, and measures through a per-epoch monitor; an attacker that knows the scheme may mix a set of
its own (a key of its own, reverse-engineered inputs) into every batch the way embedding mixes triggers.
Some attacks change the training itself: its weight decay (regularisation), its loss (distillation
against soft targets) or each batch before the step (adversarial training adds perturbed copies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from backmark.attacks.base import AttackData, Monitor
from backmark.models.layout import to_training_layout
from backmark.models.modes import evaluating
from backmark.training import (
    SCHEDULES,
    WEIGHT_DECAY,
    Batch,
    DeviceBatches,
    Loss,
    Schedule,
    Triggers,
    cross_entropy,
    model_device,
    run_epochs,
)

__all__ = [
    "BATCH_SIZE",
    "SCHEDULES",
    "WEIGHT_DECAY",
    "BatchMap",
    "Loss",
    "Mix",
    "Schedule",
    "fit",
    "fit_head",
    "head_inputs",
]

BATCH_SIZE = 100  # images per step, as in the reference code


def _generator() -> torch.Generator:
    # drawn from the global generator, which the attack seeded (Attack.__call__)
    return torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))


@dataclass(frozen=True, eq=False)
class Mix:
    """Labelled images appended to every batch, ``per_batch`` of them, each once per pass over the set.

    Attributes:
        images: uint8 (M, C, H, W), pixels 0..255.
        labels: int64 (M,).
        per_batch: images of the set appended to every batch of :data:`BATCH_SIZE` attacker images.
    """

    images: torch.Tensor
    labels: torch.Tensor
    per_batch: int


BatchMap = Callable[[Batch], Batch]
"""Maps each training batch to the one the step trains on (adversarial training appends perturbed copies)."""


class _Mapped:
    """``batches`` with ``transform`` applied to each, as they are drawn."""

    def __init__(self, batches: Iterable[Batch], transform: BatchMap) -> None:
        self.batches, self.transform = batches, transform

    def __iter__(self) -> Iterator[Batch]:
        return (self.transform(batch) for batch in self.batches)


def fit(
    model: nn.Module,
    data: AttackData,
    *,
    epochs: int,
    lr: float,
    schedule: Schedule = "constant",
    labels: torch.Tensor | None = None,
    weight_decay: float = WEIGHT_DECAY,
    loss: Loss = cross_entropy,
    transform: BatchMap | None = None,
    after_step: Callable[[], None] | None = None,
    monitor: Monitor | None = None,
    mix: Mix | None = None,
) -> None:
    """Train every parameter of ``model`` in place with SGD (Nesterov momentum 0.9, weight decay 5e-4).

    ``labels`` replaces ``data.labels``: int64 (N,) (model extraction trains on the suspect's answers)
    or float (N, K) target probabilities for a ``loss`` that takes them (distillation); ``weight_decay``
    replaces the L2 decay of 5e-4; ``loss`` (a :data:`~backmark.training.loop.Loss`) replaces
    cross-entropy; ``transform`` maps every batch before its step (:data:`BatchMap`); ``after_step``
    runs after every optimiser step (fine-pruning re-applies its mask there); ``mix`` appends its
    images to every batch (:class:`Mix`; class labels only).
    """
    gen = _generator()
    fmt = to_training_layout(model)  # channels-last where safe: faster on CPU
    device = model_device(model)
    extra = None
    if mix is not None:
        seed = int(torch.randint(2**62, (1,)))
        extra = Triggers(mix.images, mix.labels, per_batch=mix.per_batch, seed=seed, device=device)
    batches = DeviceBatches(
        data.images, data.labels if labels is None else labels, batch_size=BATCH_SIZE, generator=gen,
        device=device, memory_format=fmt, triggers=extra,
    )  # fmt: skip
    steps = len(batches)
    run_epochs(
        model, batches if transform is None else _Mapped(batches, transform), steps, epochs=epochs, lr=lr,
        schedule=schedule, memory_format=fmt, params=[p for p in model.parameters() if p.requires_grad],
        weight_decay=weight_decay, loss=loss, after_step=after_step,
        after_epoch=None if monitor is None else lambda epoch: monitor(epoch, model),
    )  # fmt: skip
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
                model(images[start : start + batch].to(device).float().div_(255.0))
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
    batches = DeviceBatches(
        features, data.labels, batch_size=BATCH_SIZE, generator=_generator(), device=head.weight.device
    )
    run_epochs(
        head, batches, len(batches), epochs=epochs, lr=lr, schedule=schedule,
        memory_format=torch.contiguous_format,
        after_epoch=None if monitor is None else lambda epoch: monitor(epoch, model),
    )  # fmt: skip
