"""The built-in trainer behind ``backmark train`` and ``backmark embed`` (with a key: Mark).

Data and triggers live on the training device as uint8 (:class:`~backmark.training.batches.DeviceBatches`);
SGD with Nesterov momentum and a one-cycle (warm-up, then cosine decay) or constant learning rate. Under
``torchrun`` the model trains data-parallel (DistributedDataParallel): each rank takes its slice of every
global batch and of its triggers, evaluation is split between the ranks, and only rank 0 shows progress.

With a key, the scheduled epochs are followed by a *trigger phase*: short rounds at a small constant
learning rate with more triggers per batch, stopping as soon as every trigger is answered. With the
reference code's 2 triggers per batch of 100 alone, 5 epochs left 1 to 9 of 100 triggers unlearned on
Fashion-MNIST; a mark that answers all of them keeps its margin under attack (docs/embedding.md).
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from backmark.errors import BackmarkError
from backmark.keys.model import MarkingKey
from backmark.models.layout import to_training_layout
from backmark.training.batches import Augment, Batch, DeviceBatches, Triggers
from backmark.training.device import Device, model_device, resolve_device
from backmark.training.distributed import World, all_sum, check_agree, shard, sync_buffers, world
from backmark.training.loop import WEIGHT_DECAY, Stepper, correct_count, set_lr, sgd
from backmark.training.schedule import SCHEDULES, Schedule, lr_factor


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters. Defaults suit the small CNN on Fashion-MNIST (about 92% in 5 epochs)."""

    epochs: int = 5
    batch_size: int = 100  # clean training images per (global) batch
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9
    weight_decay: float = WEIGHT_DECAY
    schedule: Schedule = "onecycle"  # onecycle: 15% linear warm-up, then cosine decay to 0
    triggers_per_batch: int = 2  # k trigger samples appended to every batch (paper: 2 per 100)
    augment: Augment = "none"  # crop: random 4-pixel shifts; flip-crop: also horizontal flips
    seed: int = 0
    # The trigger phase, with a key only: after the scheduled epochs, up to finish_rounds rounds at the
    # constant lr * finish_lr_scale with finish_triggers_per_batch triggers per batch, until every
    # trigger is answered. A round is finish_steps batches, at most one epoch's but enough to show every
    # trigger once. 0 rounds: none, as in the reference code.
    finish_rounds: int = 20
    finish_steps: int = 100  # batches per round
    finish_lr_scale: float = 0.2  # of lr: 0.01 with the default lr, PreTrained's rate
    finish_triggers_per_batch: int = 20
    # Speed options, off by default (docs/benchmarks.md): bfloat16 autocast pays on recent GPUs and is
    # many times slower on CPUs without bf16 units; torch.compile costs tens of seconds up front.
    bf16: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        self.check()  # a config that cannot work is never built

    def check(self) -> None:
        for name in (
            "epochs",
            "batch_size",
            "triggers_per_batch",
            "finish_steps",
            "finish_triggers_per_batch",
        ):
            value = getattr(self, name)
            if value < 1:
                raise BackmarkError(f"{{{name}}} must be at least 1, got {value}", params=[name])
        if self.finish_rounds < 0:
            raise BackmarkError(
                f"{{finish_rounds}} must be 0 (no trigger phase) or more, got {self.finish_rounds}",
                params=["finish_rounds"],
            )
        for name in ("lr", "finish_lr_scale"):
            value = getattr(self, name)
            if not value > 0:
                raise BackmarkError(f"{{{name}}} must be positive, got {value}", params=[name])
        if self.schedule not in SCHEDULES:
            raise BackmarkError(
                f"{{schedule}} must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
                params=["schedule"],
            )
        if self.augment not in get_args(Augment):
            raise BackmarkError(
                f"{{augment}} must be one of {', '.join(get_args(Augment))}, got {self.augment!r}",
                params=["augment"],
            )


@dataclass(frozen=True)
class EpochRecord:
    """One scheduled epoch (phase "train") or one round of the trigger phase (phase "finish")."""

    epoch: int
    train_loss: float
    test_acc: float
    trigger_acc: float | None
    seconds: float
    phase: Literal["train", "finish"] = "train"
    steps: int = 0  # optimiser steps in this epoch or round


@dataclass(frozen=True)
class TrainResult:
    config: TrainConfig
    history: tuple[EpochRecord, ...]
    seconds: float
    stopped_early: bool = False

    @property
    def test_acc(self) -> float:
        return self.history[-1].test_acc

    @property
    def trigger_acc(self) -> float | None:
        return self.history[-1].trigger_acc

    @property
    def epochs_run(self) -> int:
        """Scheduled epochs run (fewer than configured only when stopped early)."""
        return sum(h.phase == "train" for h in self.history)

    @property
    def finish_rounds_run(self) -> int:
        return sum(h.phase == "finish" for h in self.history)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_tensors(key: MarkingKey) -> tuple[torch.Tensor, torch.Tensor]:
    """The key's triggers as uint8 (n, C, H, W) and their labels as int64 (n,), on the CPU."""
    return torch.from_numpy(np.ascontiguousarray(key.images)), torch.from_numpy(key.labels.astype(np.int64))


class _Evaluator:
    """Test and trigger accuracy after an epoch: each rank counts its share, the counts are summed."""

    def __init__(
        self,
        model: nn.Module,
        test: tuple[torch.Tensor, torch.Tensor],
        key: MarkingKey | None,
        device: torch.device,
        w: World,
    ) -> None:
        self.model, self.device = model, device
        part = shard(len(test[0]), w)
        self.test = (test[0][part].to(device), test[1][part].to(device))
        self.sizes = [len(test[0])]
        self.triggers: tuple[torch.Tensor, torch.Tensor] | None = None
        if key is not None:
            images, labels = key_tensors(key)
            part = shard(key.n, w)
            self.triggers = (images[part].to(device), labels[part].to(device))
            self.sizes.append(key.n)

    def __call__(self) -> tuple[float, float | None]:
        sync_buffers(self.model)  # every rank evaluates (and ends with) rank 0's batch-norm statistics
        counts = [float(correct_count(self.model, *self.test))]
        if self.triggers is not None:
            counts.append(float(correct_count(self.model, *self.triggers)))
        totals = all_sum(counts, self.device)
        accs = [c / max(n, 1) for c, n in zip(totals, self.sizes, strict=True)]
        return accs[0], accs[1] if len(accs) > 1 else None


def _wrap(model: nn.Module, config: TrainConfig, device: torch.device, w: World) -> nn.Module:
    """What the steps call: the model, under DistributedDataParallel with several ranks, compiled if asked."""
    net: nn.Module = model
    if w.parallel:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    return net


def train(
    model: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor],
    *,
    config: TrainConfig,
    key: MarkingKey | None = None,
    progress: bool = True,
    stop_at_trigger_acc: float | None = None,
    desc: str = "train",
    device: Device = None,
) -> TrainResult:
    """Train ``model`` in place on uint8 ``train_data``; with ``key``, embed its triggers (Mark).

    ``device`` (``cpu``, ``cuda``, ``mps``, ``auto`` or a torch.device; default: where ``model`` is)
    receives the model and the data. In a torch.distributed process group (``torchrun``) the model
    trains data-parallel and every rank ends with the same weights. ``stop_at_trigger_acc`` ends training
    after the first epoch whose trigger accuracy reaches it (the PreTrained mode: continue only until the
    trigger set is learned). Evaluates test accuracy, and trigger accuracy when a key is given, after
    every epoch. With a key and ``config.finish_rounds``, the trigger phase follows the epochs if a
    trigger is still unanswered (see :class:`TrainConfig`).
    """
    dev = model_device(model) if device is None else resolve_device(device)
    w = world()
    torch.manual_seed(config.seed)
    gen = torch.Generator()
    gen.manual_seed(config.seed)
    model.to(dev)
    fmt = to_training_layout(model)  # channels-last where safe: faster convolutions on CPU
    x_train, y_train = train_data
    triggers = None
    if key is not None:
        triggers = Triggers(
            *key_tensors(key), per_batch=config.triggers_per_batch, seed=config.seed, device=dev
        )
    data = DeviceBatches(
        x_train, y_train, batch_size=config.batch_size, generator=gen, augment=config.augment, device=dev,
        memory_format=fmt, triggers=triggers, world=w,
    )  # fmt: skip
    steps_per_epoch = len(data)
    total_steps = config.epochs * steps_per_epoch
    optimizer = sgd(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    step = Stepper(
        _wrap(model, config, dev, w), optimizer, memory_format=fmt, device=dev, world=w, bf16=config.bf16
    )
    evaluate = _Evaluator(model, test_data, key, dev, w)
    history: list[EpochRecord] = []
    start_all = time.perf_counter()
    show = progress and w.main

    def log(record: EpochRecord, what: str) -> None:
        history.append(record)
        if show:
            trig = "" if record.trigger_acc is None else f", trigger acc {record.trigger_acc:.1%}"
            tqdm.write(
                f"{desc} {what}: loss {record.train_loss:.4f}, test acc {record.test_acc:.2%}{trig}",
                file=sys.stderr,
            )

    def result(stopped: bool) -> TrainResult:
        sync_buffers(model)
        check_agree(model)
        return TrainResult(config, tuple(history), time.perf_counter() - start_all, stopped)

    done = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        start = time.perf_counter()
        bar = tqdm(
            data,
            total=steps_per_epoch,
            desc=f"{desc} {epoch}/{config.epochs}",
            disable=None if show else True,  # None: no bar when stderr is not a terminal
            leave=False,
            unit="batch",
        )
        for batch in bar:
            set_lr(optimizer, config.lr * lr_factor(config.schedule, done, total_steps))
            step(batch)
            done += 1
        test_acc, trig_acc = evaluate()
        seconds = time.perf_counter() - start
        record = EpochRecord(epoch, step.take_loss(), test_acc, trig_acc, seconds, "train", steps_per_epoch)
        log(record, f"epoch {epoch}")
        if stop_at_trigger_acc is not None and trig_acc is not None and trig_acc >= stop_at_trigger_acc:
            return result(epoch < config.epochs)
    target = 1.0 if stop_at_trigger_acc is None else stop_at_trigger_acc
    if key is not None and config.finish_rounds > 0 and (history[-1].trigger_acc or 0.0) < target:
        _trigger_phase(model, optimizer, step, data, key, config, evaluate, target, log)
    return result(False)


def _trigger_phase(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: Stepper,
    data: DeviceBatches,
    key: MarkingKey,
    config: TrainConfig,
    evaluate: Callable[[], tuple[float, float | None]],
    target: float,
    log: Callable[[EpochRecord, str], None],
) -> None:
    """Rounds of ``config.finish_steps`` batches at a small constant lr, until ``target`` is reached.

    Training data keeps flowing (in fresh shuffled passes), so the model learns the triggers without
    forgetting its task; trigger accuracy is checked after every round, test accuracy too (recorded).
    """
    set_lr(optimizer, config.lr * config.finish_lr_scale)
    per_batch = config.finish_triggers_per_batch
    assert data.triggers is not None
    data.triggers = Triggers(
        data.triggers.images,
        data.triggers.labels,
        per_batch=per_batch,
        seed=config.seed + 1,
        device=data.device,
    )
    round_steps = max(min(config.finish_steps, len(data)), math.ceil(key.n / per_batch))

    def endless() -> Iterator[Batch]:
        while True:
            yield from data

    mixed = endless()
    for r in range(1, config.finish_rounds + 1):
        model.train()
        start = time.perf_counter()
        for batch in itertools.islice(mixed, round_steps):
            step(batch)
        test_acc, trig_acc = evaluate()
        seconds = time.perf_counter() - start
        record = EpochRecord(
            config.epochs + r, step.take_loss(), test_acc, trig_acc, seconds, "finish", round_steps
        )
        log(record, f"trigger round {r}/{config.finish_rounds}")
        if trig_acc is not None and trig_acc >= target:
            return
