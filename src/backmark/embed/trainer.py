"""The built-in trainer behind ``backmark train`` and ``backmark embed``.

Data stays in memory as uint8 and becomes float [0, 1] one batch at a time; augmentation is done as
batched tensor ops; triggers are mixed in by the same :class:`TriggerLoader` that users wrap their own
loaders with. SGD with Nesterov momentum and a one-cycle (warm-up, then cosine decay) or constant
learning rate.

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from backmark.embed.mixer import TriggerLoader
from backmark.errors import BackmarkError
from backmark.keys.model import MarkingKey
from backmark.models.layout import to_training_layout
from backmark.models.modes import evaluating

Augment = Literal["none", "crop", "flip-crop"]
Schedule = Literal["onecycle", "constant"]


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters. Defaults suit the small CNN on Fashion-MNIST (about 92% in 5 epochs)."""

    epochs: int = 5
    batch_size: int = 100  # clean training images per batch
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
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


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crops of a zero-padded batch, as one gather: x is (B, C, H, W)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    rows = (torch.arange(h).unsqueeze(0) + dy).view(b, 1, h, 1)
    cols = (torch.arange(w).unsqueeze(0) + dx).view(b, 1, 1, w)
    batch = torch.arange(b).view(b, 1, 1, 1)
    chan = torch.arange(c).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]


class InMemoryBatches:
    """Shuffled float [0, 1] batches from uint8 (N, C, H, W) images, a fresh order every pass."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        augment: Augment = "none",
        generator: torch.Generator,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.augment, self.generator = batch_size, augment, generator

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.images), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx].float().div_(255.0)
            if self.augment != "none":
                x = random_shift(x, 4 if x.shape[-1] >= 32 else 2, self.generator)
            if self.augment == "flip-crop":
                flip = torch.rand(len(x), generator=self.generator) < 0.5
                x[flip] = x[flip].flip(-1)
            yield x, self.labels[idx]


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on uint8 or float [0, 1] images (eval mode, restored afterwards)."""
    correct = 0
    with evaluating(model):
        for start in range(0, len(images), batch):
            x = images[start : start + batch]
            x = x.float().div(255.0) if x.dtype == torch.uint8 else x
            correct += int((model(x).argmax(1) == labels[start : start + batch]).sum())
    return correct / max(len(images), 1)


def _lr_lambda(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warm = max(1, int(0.15 * total_steps))

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    fmt: torch.memory_format,
) -> float:
    loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return float(loss.detach()) * len(y)


def _evaluate(
    model: nn.Module, test_data: tuple[torch.Tensor, torch.Tensor], key: MarkingKey | None
) -> tuple[float, float | None]:
    """(test accuracy, trigger accuracy or None without a key)."""
    test_acc = accuracy(model, *test_data)
    if key is None:
        return test_acc, None
    return test_acc, accuracy(model, *key.trigger_tensors())


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
) -> TrainResult:
    """Train ``model`` in place on uint8 ``train_data``; with ``key``, embed its triggers (Mark).

    ``stop_at_trigger_acc`` ends training after the first epoch whose trigger accuracy reaches it
    (the PreTrained mode: continue only until the trigger set is learned). Evaluates test accuracy,
    and trigger accuracy when a key is given, after every epoch. With a key and ``config.finish_rounds``,
    the trigger phase follows the epochs if a trigger is still unanswered (see :class:`TrainConfig`).
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator()
    gen.manual_seed(config.seed)
    x_train, y_train = train_data
    data = InMemoryBatches(
        x_train, y_train, batch_size=config.batch_size, augment=config.augment, generator=gen
    )
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] = data
    if key is not None:
        batches = TriggerLoader(data, key, per_batch=config.triggers_per_batch, seed=config.seed)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config, config.epochs * steps_per_epoch)
    )
    fmt = to_training_layout(model)  # channels-last where safe: faster convolutions on CPU
    history: list[EpochRecord] = []
    start_all = time.perf_counter()
    target = 1.0 if stop_at_trigger_acc is None else stop_at_trigger_acc

    def log(record: EpochRecord, what: str) -> None:
        history.append(record)
        if progress:
            trig = "" if record.trigger_acc is None else f", trigger acc {record.trigger_acc:.1%}"
            tqdm.write(
                f"{desc} {what}: loss {record.train_loss:.4f}, test acc {record.test_acc:.2%}{trig}",
                file=sys.stderr,
            )

    for epoch in range(1, config.epochs + 1):
        model.train()
        start = time.perf_counter()
        total_loss, seen, steps = 0.0, 0, 0
        bar = tqdm(
            batches,
            total=steps_per_epoch,
            desc=f"{desc} {epoch}/{config.epochs}",
            disable=None if progress else True,  # None: no bar when stderr is not a terminal
            leave=False,
            unit="batch",
        )
        for x, y in bar:
            total_loss += _step(model, optimizer, x, y, fmt)
            scheduler.step()
            seen, steps = seen + len(y), steps + 1
            if seen % (20 * config.batch_size) < len(y):
                bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        test_acc, trig_acc = _evaluate(model, test_data, key)
        seconds = time.perf_counter() - start
        log(
            EpochRecord(epoch, total_loss / max(seen, 1), test_acc, trig_acc, seconds, "train", steps),
            f"epoch {epoch}",
        )
        if stop_at_trigger_acc is not None and trig_acc is not None and trig_acc >= stop_at_trigger_acc:
            stopped = epoch < config.epochs
            return TrainResult(config, tuple(history), time.perf_counter() - start_all, stopped)
    if key is not None and config.finish_rounds > 0 and (history[-1].trigger_acc or 0.0) < target:
        _trigger_phase(model, optimizer, data, key, config, fmt, test_data, target, log)
    return TrainResult(config, tuple(history), time.perf_counter() - start_all, False)


def _trigger_phase(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: InMemoryBatches,
    key: MarkingKey,
    config: TrainConfig,
    fmt: torch.memory_format,
    test_data: tuple[torch.Tensor, torch.Tensor],
    target: float,
    log: Callable[[EpochRecord, str], None],
) -> None:
    """Rounds of ``config.finish_steps`` batches at a small constant lr, until ``target`` is reached.

    Training data keeps flowing (in fresh shuffled passes), so the model learns the triggers without
    forgetting its task; trigger accuracy is checked after every round, test accuracy too (recorded).
    """
    for group in optimizer.param_groups:
        group["lr"] = config.lr * config.finish_lr_scale
    endless = itertools.chain.from_iterable(itertools.repeat(data))
    per_batch = config.finish_triggers_per_batch
    round_steps = max(min(config.finish_steps, len(data)), math.ceil(key.n / per_batch))
    mixed = iter(TriggerLoader(endless, key, per_batch=per_batch, seed=config.seed + 1))
    for r in range(1, config.finish_rounds + 1):
        model.train()
        start = time.perf_counter()
        total_loss, seen = 0.0, 0
        for x, y in itertools.islice(mixed, round_steps):
            total_loss += _step(model, optimizer, x, y, fmt)
            seen += len(y)
        test_acc, trig_acc = _evaluate(model, test_data, key)
        seconds = time.perf_counter() - start
        record = EpochRecord(
            config.epochs + r, total_loss / max(seen, 1), test_acc, trig_acc, seconds, "finish", round_steps
        )
        log(record, f"trigger round {r}/{config.finish_rounds}")
        if trig_acc is not None and trig_acc >= target:
            return
