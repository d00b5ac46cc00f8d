"""The one training step and the one evaluation, shared by ``train``, embedding and every attack.

:class:`Stepper` runs forward, loss, backward and an SGD step on a batch of :mod:`backmark.training.batches`,
in the model's training memory layout, optionally under bf16 autocast, a compiled forward, and
DistributedDataParallel. Its loss is cross-entropy unless another :data:`Loss` is given (distillation trains
against soft targets at a temperature). :func:`run_epochs` is the plain epoch loop the attacks use;
:func:`accuracy` is the one evaluation, in large batches on the model's device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backmark.models.modes import evaluating
from backmark.training.batches import Batch
from backmark.training.device import model_device
from backmark.training.distributed import World, all_sum
from backmark.training.schedule import Schedule, lr_factor

EVAL_BATCH = 1000  # images per forward pass when evaluating
WEIGHT_DECAY = 5e-4  # every backmark trainer's L2 weight decay, unless a caller asks for another

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(logits, targets)`` -> the batch's mean loss, a scalar tensor that backpropagates to the logits.

``logits`` are float (B, K); ``targets`` are the batch's ``y``: int64 class labels (B,) or, for a loss that
takes them, float (B, K) target probabilities (soft labels).
"""


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The default :data:`Loss`: mean cross-entropy to int64 labels (B,) or probabilities float (B, K)."""
    return F.cross_entropy(logits, targets)


def sgd(
    params: Iterable[nn.Parameter], *, lr: float, momentum: float = 0.9, weight_decay: float = WEIGHT_DECAY
) -> torch.optim.SGD:
    """SGD with Nesterov momentum (when ``momentum`` > 0) and weight decay: every backmark trainer's."""
    return torch.optim.SGD(
        list(params), lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class Stepper:
    """One optimiser step per batch of ``model`` (an ``nn.Module``, possibly wrapped for DDP).

    ``world`` scales each rank's loss so that DDP's average of the ranks' gradients is the gradient of
    the mean loss over the whole global batch, even when the ranks' slices differ in size. ``bf16`` runs
    forward and loss under bfloat16 autocast; ``loss`` (default :func:`cross_entropy`) maps the logits
    and the batch's ``y`` to the mean loss; ``after_step`` runs after every step (fine-pruning keeps its
    mask there). The loss is summed on the device and read once an epoch, so steps never wait on it.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        memory_format: torch.memory_format,
        device: torch.device,
        world: World | None = None,
        bf16: bool = False,
        loss: Loss = cross_entropy,
        after_step: Callable[[], None] | None = None,
    ) -> None:
        self.model, self.optimizer, self.fmt, self.device = model, optimizer, memory_format, device
        self.world = world or World()
        self.bf16, self.loss, self.after_step = bf16, loss, after_step
        wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.loss_sum = torch.zeros((), dtype=wide, device=device)
        self.seen = 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def __call__(self, batch: Batch) -> None:
        x, y, total = batch
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.fmt)  # already so for DeviceBatches' images
        with self._autocast():
            loss = self.loss(self.model(x), y)
        self.loss_sum += loss.detach().to(self.loss_sum.dtype) * len(y)
        if self.world.parallel:  # DDP averages over ranks: weight each rank's mean by its share
            loss = loss * (len(y) * self.world.size / total)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        if self.after_step is not None:
            self.after_step()
        self.seen += len(y)

    def take_loss(self) -> float:
        """Mean training loss per example since the last call, over every rank."""
        total, seen = all_sum([float(self.loss_sum), float(self.seen)], self.device)
        self.loss_sum.zero_()
        self.seen = 0
        return total / max(seen, 1)


@torch.inference_mode()
def correct_count(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = EVAL_BATCH
) -> int:
    """How many of ``images`` (uint8, or float [0, 1]) ``model`` labels correctly, in eval mode."""
    device = model_device(model)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with evaluating(model):
        for start in range(0, len(images), batch):
            x = images[start : start + batch].to(device, non_blocking=True)
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            y = labels[start : start + batch].to(device, non_blocking=True)
            correct += (model(x).argmax(1) == y).sum()
    return int(correct)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = EVAL_BATCH) -> float:
    """Top-1 accuracy of ``model`` on uint8 or float [0, 1] images, on the model's device.

    Eval mode inside, each submodule's own mode restored afterwards.
    """
    return correct_count(model, images, labels, batch) / max(len(images), 1)


def run_epochs(
    model: nn.Module,
    batches: Iterable[Batch],
    steps_per_epoch: int,
    *,
    epochs: int,
    lr: float,
    schedule: Schedule,
    memory_format: torch.memory_format,
    params: Iterable[nn.Parameter] | None = None,
    weight_decay: float = WEIGHT_DECAY,
    loss: Loss = cross_entropy,
    after_step: Callable[[], None] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> None:
    """Train ``params`` (default: all of ``model``'s) for ``epochs`` passes over ``batches``.

    SGD (:func:`sgd`, L2 ``weight_decay``) with the learning rate ``lr * lr_factor(schedule, step, total)``
    at every step, minimising ``loss`` (:class:`Stepper`); ``after_epoch(epoch)`` (1-based) runs after each
    pass, with the model in whatever mode it left it.
    """
    device = model_device(model)
    optimizer = sgd(params if params is not None else model.parameters(), lr=lr, weight_decay=weight_decay)
    step = Stepper(
        model, optimizer, memory_format=memory_format, device=device, loss=loss, after_step=after_step
    )
    total, done = epochs * steps_per_epoch, 0
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in batches:
            set_lr(optimizer, lr * lr_factor(schedule, done, total))
            step(batch)
            done += 1
        if after_epoch is not None:
            after_epoch(epoch)
