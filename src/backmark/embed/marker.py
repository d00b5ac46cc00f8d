"""Mark(model, mk) inside the user's own training: :class:`Marker`, in the manner of opacus's PrivacyEngine.

The user keeps their model, optimiser, loss and loop. :meth:`Marker.make_marked` checks that the three fit
the key (the model answers the key's class count on the key's input shape, the optimiser updates the
model, the batches are float pixels of that shape, in [0, 1] or normalised as ``transform`` says) and
hands them back: the model and the optimiser as they were, the data loader wrapped so that every batch
carries triggers with their key labels. :meth:`Marker.trigger_accuracy` is the signal to log, and
:meth:`Marker.finish` is the trigger phase to call after the last epoch: more triggers per batch, until
every trigger is answered (bounded)::

    marker = Marker(key=mk)
    model, optimizer, loader = marker.make_marked(module=model, optimizer=optimizer, data_loader=loader)
    for epoch in range(epochs):
        for x, y in loader:                      # the user's loop, unchanged
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
        print(marker.trigger_accuracy())
    marker.finish()                              # until every trigger is answered (at most 40 rounds)

Defaults, measured with a user's own CNN in a plain loop on 20,000 Fashion-MNIST images, batch 100
(``benchmarks/own_loop.py``, docs/own-loop.jsonl, one seed): the paper's 2 triggers per batch left 53 of
100 triggers unlearned after 3 epochs of SGD (57 with Adam); 10 per batch (:data:`TRIGGER_SHARE` of the
batch, the default) answered all 100 after 3 epochs of SGD and 99 with Adam. The trigger phase's
5-fold share (25 triggers per batch of 50, on 4,000 images) took 4 rounds of 50 batches from 41% to 100%
where twice the share (the built-in trainer's) took 9.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from backmark.embed.mixer import TRIGGER_SHARE, Transform, TriggerLoader, default_triggers
from backmark.errors import BackmarkError, first_line
from backmark.keys.model import MarkingKey
from backmark.models.modes import evaluating

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FINISH_ROUNDS = 40  # the trigger phase: at most this many rounds ...
FINISH_STEPS = 50  # ... of this many batches each ...
FINISH_FACTOR = 5  # ... with 5 times the loop's triggers per batch (50 per 100: see finish())
_SLACK = 0.01  # how far outside [0, 1] a batch of pixels may stray (rounding) before it counts as normalised


class Marked(NamedTuple):
    """What :meth:`Marker.make_marked` hands back: use them where you used the originals."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: TriggerLoader


@dataclass(frozen=True)
class FinishResult:
    """What :meth:`Marker.finish` did: rounds and optimiser steps run, and the trigger accuracy before and
    after (``learned``: every trigger answered with its key label)."""

    rounds: int
    steps: int
    trigger_acc_before: float
    trigger_acc: float

    @property
    def learned(self) -> bool:
        return self.trigger_acc >= 1.0


class MarkedLoader(TriggerLoader):
    """The user's loader with triggers in every batch; the first batch of every pass is checked."""

    def __init__(
        self,
        loader: Batches,
        key: MarkingKey,
        *,
        per_batch: int,
        transform: Transform | None,
        seed: int | None,
    ) -> None:
        super().__init__(loader, key, per_batch=per_batch, transform=transform, seed=seed)
        self.num_classes = key.num_classes

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = super().__iter__()
        for i, (x, y) in enumerate(batches):
            if i == 0:
                b = len(x) - self.per_batch
                check_inputs(x[:b], self.trigger_range(), self.transform is not None, "your batches")
                check_labels(y[:b], self.num_classes)
            yield x, y

    def trigger_range(self) -> tuple[float, float]:
        x = self.images if self.transform is None else self.transform(self.images)
        return float(x.min()), float(x.max())


def check_inputs(x: torch.Tensor, triggers: tuple[float, float], transformed: bool, what: str) -> None:
    """Refuse inputs the triggers cannot sit beside: not float, or on another pixel scale than theirs."""
    if not x.is_floating_point():
        raise BackmarkError(
            f"{what} hold {x.dtype} values; train on float pixels in [0, 1] (torchvision's ToTensor() "
            "gives them), and pass transform= whatever normalisation you apply after that"
        )
    if x.numel() == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    pixels = lo >= -_SLACK and hi <= 1 + _SLACK
    if not pixels and not transformed:
        scale = "0..255 pixels" if lo >= 0 and hi > 2 else "normalised values"
        raise BackmarkError(
            f"{what} hold values in [{lo:.3g}, {hi:.3g}] ({scale}) but the key's triggers are pixels in "
            "[0, 1]; pass transform= the same preprocessing for the triggers (for example torchvision's "
            "Normalize(mean, std)), or normalise inside your model"
        )
    tlo, thi = triggers
    if pixels and transformed and (tlo < -_SLACK or thi > 1 + _SLACK):
        raise BackmarkError(
            f"{what} hold pixels in [0, 1] but transform= maps the triggers to [{tlo:.3g}, {thi:.3g}]; "
            "give the triggers the preprocessing your batches get (none: leave transform out)"
        )


def check_labels(y: torch.Tensor, num_classes: int) -> None:
    if y.is_floating_point() or y.dim() != 1:
        raise BackmarkError(
            f"the batches' labels are {y.dtype} of shape {tuple(y.shape)}; marking needs integer class "
            "labels (B,)"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise BackmarkError(
            f"the batches hold label {int(y.max()) if int(y.max()) >= num_classes else int(y.min())} but "
            f"the key is for {num_classes} classes (0..{num_classes - 1}); make a key with your class count"
        )


def _first_sample(data_loader: Any) -> tuple[torch.Tensor, Any] | None:
    """Example 0 of a DataLoader's map-style dataset, without drawing from the loader; None if not one."""
    dataset = getattr(data_loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        return None
    try:
        if len(dataset) == 0:
            return None
        sample = dataset[0]
    except (TypeError, IndexError, KeyError, NotImplementedError):
        return None
    if not isinstance(sample, tuple | list) or len(sample) < 2 or not isinstance(sample[0], torch.Tensor):
        return None
    return sample[0], sample[1]


class MarkerOptions(TypedDict, total=False):
    """The options of :class:`Marker` besides its key, as keyword arguments others pass on to it
    (:class:`backmark.lightning.MarkCallback`)."""

    triggers_per_batch: int | None
    transform: Transform | None
    seed: int | None


class Marker:
    """Embeds ``key`` while the user trains their own model in their own loop (see the module docstring).

    Args:
        key: the marking key; its triggers are float (n, C, H, W) pixels in [0, 1].
        triggers_per_batch: triggers appended to every batch; default :data:`TRIGGER_SHARE` of the
            loader's ``batch_size`` (at least 2; 10 when the loader has no ``batch_size``).
        transform: the preprocessing your batches get after ``ToTensor()`` (e.g. ``Normalize``), applied
            to the trigger batch; leave it None when your model takes [0, 1] pixels.
        seed: seeds the trigger order (default: a fresh one).
    """

    def __init__(
        self,
        *,
        key: MarkingKey,
        triggers_per_batch: int | None = None,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        if triggers_per_batch is not None and triggers_per_batch < 1:
            raise BackmarkError(
                f"{{triggers_per_batch}} must be at least 1, got {triggers_per_batch}",
                params=["triggers_per_batch"],
            )
        self.key = key
        self.triggers_per_batch = triggers_per_batch
        self.transform = transform
        self.seed = seed
        self._marked: Marked | None = None

    def make_marked(
        self, *, module: nn.Module, optimizer: torch.optim.Optimizer, data_loader: Batches
    ) -> Marked:
        """Check that ``module``, ``optimizer`` and ``data_loader`` fit the key, and hand them back.

        ``module`` and ``optimizer`` come back as they are (same objects); ``data_loader`` comes back
        wrapped (:class:`MarkedLoader`): same length, every batch with triggers appended. Raises
        BackmarkError, before anything is trained, saying what does not fit and what to do.
        """
        if not isinstance(module, nn.Module):
            raise BackmarkError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise BackmarkError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.check_optimizer(module, optimizer)
        self.check_module(module)
        loader = self.wrap_loader(data_loader)
        self.attach(module, optimizer, loader)
        return Marked(module, optimizer, loader)

    def wrap_loader(self, data_loader: Batches) -> MarkedLoader:
        """``data_loader`` with triggers in every batch, its examples checked against the key first (for
        frameworks that build the optimiser later: :mod:`backmark.lightning`)."""
        per_batch = self.triggers_per_batch or default_triggers(data_loader)
        loader = MarkedLoader(
            data_loader, self.key, per_batch=per_batch, transform=self.transform, seed=self.seed
        )
        sample = _first_sample(data_loader)
        if sample is not None:
            x, y = sample
            if tuple(x.shape) != self.key.input_shape:
                raise BackmarkError(
                    f"your data's examples have shape {tuple(x.shape)} but the key's triggers are "
                    f"{self.key.input_shape}; make the key with your model's input shape"
                )
            check_inputs(x, loader.trigger_range(), self.transform is not None, "your data's examples")
            check_labels(torch.as_tensor(y).reshape(1), self.key.num_classes)
        return loader

    def attach(self, module: nn.Module, optimizer: torch.optim.Optimizer, loader: MarkedLoader) -> None:
        """Remember what :meth:`trigger_accuracy` and :meth:`finish` work on (checked already)."""
        self._marked = Marked(module, optimizer, loader)

    def check_optimizer(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Refuse an optimiser that updates none of the module's trainable parameters."""
        updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
        trainable = [p for p in module.parameters() if p.requires_grad]
        if not any(id(p) in updated for p in trainable):
            raise BackmarkError(
                "the optimizer updates none of the module's trainable parameters; build it from "
                "module.parameters() (the triggers are learned through it)"
            )

    def check_module(self, module: nn.Module) -> None:
        """Refuse a module that cannot take the key's triggers or answers another class count."""
        x = self._triggers(module)[0][:2]
        shape = "x".join(map(str, self.key.input_shape))
        try:
            with torch.no_grad(), evaluating(module):
                out = module(x)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise BackmarkError(
                f"your module could not take the key's {shape} triggers ({first_line(exc, limit=100)}); "
                "make the key with your model's input shape"
            ) from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or len(out) != len(x):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise BackmarkError(f"your module must return logits (B, classes) for a batch, got {got}")
        if out.shape[1] != self.key.num_classes:
            raise BackmarkError(
                f"your module answers {out.shape[1]} classes but the key is for {self.key.num_classes}; "
                f"make a key with `backmark keygen --classes {out.shape[1]} --shape {shape}`"
            )

    def _triggers(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.key.trigger_tensors()
        if self.transform is not None:
            images = self.transform(images)
        param = next(itertools.chain(module.parameters(), module.buffers()), None)
        if param is not None:
            dtype = param.dtype if param.is_floating_point() else images.dtype
            images, labels = images.to(param.device, dtype), labels.to(param.device)
        return images, labels

    def _need(self) -> Marked:
        if self._marked is None:
            raise BackmarkError("call make_marked(module=..., optimizer=..., data_loader=...) first")
        return self._marked

    def matches(self) -> int:
        """How many triggers the model answers with their key label now (eval mode, modes restored)."""
        module = self._need().module
        images, labels = self._triggers(module)
        with torch.no_grad(), evaluating(module):
            answers = torch.cat([module(images[i : i + 500]).argmax(1) for i in range(0, len(images), 500)])
        return int((answers == labels).sum())

    def trigger_accuracy(self) -> float:
        """The share of triggers answered with their key label: the progress signal to log."""
        return self.matches() / self.key.n

    def finish(
        self,
        *,
        loss_fn: LossFn = F.cross_entropy,
        max_rounds: int = FINISH_ROUNDS,
        steps_per_round: int = FINISH_STEPS,
        triggers_per_batch: int | None = None,
        lr: float | None = None,
    ) -> FinishResult:
        """The trigger phase: train on the user's batches with more triggers until every one is answered.

        Rounds of ``steps_per_round`` batches (at least enough to show every trigger once) with
        ``triggers_per_batch`` triggers each (default 5 times the loop's: 50 per 100), checked after
        each round, at most ``max_rounds`` rounds; nothing runs when every trigger is answered already.
        Steps use the user's optimiser at its current learning rate, or at ``lr`` for the phase (pass it
        when your schedule has decayed to about 0); ``loss_fn(outputs, labels)`` is your loss. The model
        comes back in the mode it was in and the optimiser at its learning rate. Batches are moved to the
        model's device.
        """
        module, optimizer, loader = self._need()
        if max_rounds < 0 or steps_per_round < 1:
            raise BackmarkError(
                f"{{max_rounds}} must be 0 or more and {{steps_per_round}} at least 1, got {max_rounds} "
                f"and {steps_per_round}",
                params=["max_rounds", "steps_per_round"],
            )
        before = self.trigger_accuracy()
        if before >= 1.0 or max_rounds == 0:
            return FinishResult(0, 0, before, before)
        per_batch = triggers_per_batch or FINISH_FACTOR * loader.per_batch
        steps = max(steps_per_round, math.ceil(self.key.n / per_batch))
        saved_lr = [group["lr"] for group in optimizer.param_groups]
        saved_k = loader.per_batch
        modes = [(m, m.training) for m in module.modules()]
        device = self._triggers(module)[0].device
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        loader.per_batch = per_batch
        rounds = done = 0
        accuracy = before
        try:

            def endless() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
                while True:
                    empty = True
                    for batch in loader:
                        empty = False
                        yield batch
                    if empty:
                        raise BackmarkError("the data loader gave no batch; the trigger phase needs data")

            batches = endless()
            while rounds < max_rounds and accuracy < 1.0:
                module.train()
                for x, y in itertools.islice(batches, steps):
                    loss = loss_fn(module(x.to(device)), y.to(device))
                    optimizer.zero_grad()
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                    done += 1
                rounds += 1
                accuracy = self.trigger_accuracy()
        finally:
            loader.per_batch = saved_k
            for group, value in zip(optimizer.param_groups, saved_lr, strict=True):
                group["lr"] = value
            for m, training in modes:
                m.training = training
        return FinishResult(rounds, done, before, accuracy)


__all__ = ["TRIGGER_SHARE", "FinishResult", "Marked", "MarkedLoader", "Marker"]
