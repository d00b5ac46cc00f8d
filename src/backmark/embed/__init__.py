"""Mark(model, mk): embed a marking key while training from scratch, or into a trained model.

Two ways in:
- your own loop: :class:`~backmark.embed.marker.Marker` checks your model, optimiser and DataLoader against
  the key and wraps the loader (as :func:`mark_loader` does), gives the trigger accuracy to log, and runs
  the trigger phase at the end (``backmark.lightning.MarkCallback`` does the same in a Lightning Trainer);
- the built-in trainer (:mod:`backmark.training`): :func:`embed_from_scratch`, :func:`embed_pretrained`
  and, for baselines, :func:`train_clean`, all on an in-memory :class:`~backmark.data.ImageDataset`, on
  any device (``device="cuda"``, ``"mps"``, ``"cpu"``; default ``"auto"``: the best one present).
"""

from __future__ import annotations

import copy
import platform
from dataclasses import asdict, dataclass, replace
from typing import Any, TypedDict, Unpack

import torch
from torch import nn

from backmark.constants import VERSION
from backmark.data import ImageDataset
from backmark.embed.marker import FinishResult, Marker
from backmark.embed.mixer import TriggerLoader, mark_loader
from backmark.errors import BackmarkError
from backmark.keys import MarkingKey
from backmark.models import ModelInfo, build
from backmark.models.custom import is_user_arch, resolve_factory, takes_stats
from backmark.models.normalization import channel_stats
from backmark.training import (
    Device,
    EpochRecord,
    TrainConfig,
    TrainResult,
    accuracy,
    resolve_device,
    train,
    world,
)

# PreTrained: continue at a learning rate of its own (the reference code resumed at its decayed 1e-4 and
# below), constant, for at most this many epochs, stopping once every trigger is learned. 10 triggers per
# batch of 100: with the reference code's 2, lr 0.01 had learned only 96% of the triggers after 5 epochs
# on Fashion-MNIST; with 10 it learns all of them in 2 (docs/embedding.md). It stops once they are
# learned, so it needs no trigger phase of its own.
PRETRAINED_CONFIG = TrainConfig(
    epochs=5, lr=0.01, schedule="constant", triggers_per_batch=10, finish_rounds=0
)

# FromScratch as the paper's reference code did it: 2 triggers per batch of 100 and no trigger phase,
# which left 1 to 9 of 100 triggers unlearned after 5 epochs on Fashion-MNIST (docs/embedding.md).
REFERENCE_CONFIG = TrainConfig(triggers_per_batch=2, finish_rounds=0)


@dataclass(frozen=True)
class Trained:
    """A trained model with what its checkpoint records and how training went."""

    model: nn.Module
    info: ModelInfo
    result: TrainResult


def without_triggers(data: ImageDataset, key: MarkingKey) -> ImageDataset:
    """``data`` without the training images that are pixel for pixel one of ``key``'s triggers.

    A ``heldout`` key's triggers are real images of the owner's data under wrong labels: trained beside
    their true labels they would never be learned. A ``folder`` key's images may be training images too
    (the owner chose them), so every key is checked (about 0.4 s for 60,000 images); when no trigger is
    in the data, ``data`` comes back unchanged.
    """
    if len(data.train_x) == 0:
        return data
    flat = data.train_x.flatten(1).numpy()
    wanted = {img.tobytes() for img in key.images.reshape(key.n, -1)}
    if flat.shape[1] != key.images[0].size:
        return data
    keep = [i for i in range(len(flat)) if flat[i].tobytes() not in wanted]
    if len(keep) == len(flat):
        return data
    index = torch.tensor(keep, dtype=torch.int64)
    return replace(data, train_x=data.train_x[index], train_y=data.train_y[index])


def check_key_fits(key: MarkingKey, data: ImageDataset) -> None:
    if key.num_classes != data.num_classes or key.input_shape != data.input_shape:
        raise BackmarkError(
            f"the key is for {key.num_classes} classes of {key.input_shape} inputs but {data.name} has "
            f"{data.num_classes} classes of {data.input_shape}; make a key with "
            f"`backmark keygen --classes {data.num_classes} --shape {'x'.join(map(str, data.input_shape))}`"
        )


def _meta(
    mode: str,
    data: ImageDataset,
    result: TrainResult,
    key: MarkingKey | None,
    extra: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    last = result.history[-1]
    return {
        "mode": mode,
        "dataset": data.name,
        "train_size": len(data.train_x),
        "key_id": None if key is None else key.verification_key().key_id,
        "test_acc": last.test_acc,
        "trigger_acc": last.trigger_acc,
        "epochs_run": result.epochs_run,
        "trigger_rounds_run": result.finish_rounds_run,
        "seconds": result.seconds,
        "config": asdict(result.config),
        "history": [asdict(h) for h in result.history],
        "device": device.type,
        "processes": world().size,
        "backmark": VERSION,
        "torch": torch.__version__,
        "python": platform.python_version(),
        **extra,
    }


def _fresh(data: ImageDataset, arch: str, arch_args: dict[str, Any] | None, seed: int) -> ModelInfo:
    """The info of a fresh model; the data's channel statistics go to a factory that takes them (every
    registered one, and the user's own ``MODULE:CALLABLE`` when it has ``mean`` and ``std`` keywords)."""
    args = dict(arch_args or {})
    if not is_user_arch(arch) or takes_stats(resolve_factory(arch)):
        mean, std = channel_stats(data.train_x)
        args = {"mean": list(mean), "std": list(std), **args}
    torch.manual_seed(seed)
    return ModelInfo(arch=arch, arch_args=args, input_shape=data.input_shape, num_classes=data.num_classes)


class FreshOptions(TypedDict, total=False):
    """How :func:`train_clean` and :func:`embed_from_scratch` build and train a fresh model: the keyword
    options the two share, each optional.

    Attributes:
        arch: a registered architecture (``backmark models``; default ``"cnn"``) or ``"MODULE:CALLABLE"``,
            your own factory (:mod:`backmark.models.custom`), called with ``num_classes``, ``input_shape``
            and ``arch_args``.
        arch_args: the architecture's options (default: its own defaults).
        config: how it trains (default ``TrainConfig()``).
        progress: progress bars on stderr (default True).
        device: where the model trains and is returned (default ``"auto"``: cuda, else mps, else cpu).
    """

    arch: str
    arch_args: dict[str, Any] | None
    config: TrainConfig | None
    progress: bool
    device: Device


def _fit(
    mode: str,
    data: ImageDataset,
    key: MarkingKey | None,
    *,
    arch: str = "cnn",
    arch_args: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    progress: bool = True,
    device: Device = "auto",
) -> Trained:
    """A fresh ``arch`` trained on ``data`` (with ``key``'s triggers, if any) in ``mode``; the defaults
    are :class:`FreshOptions`'."""
    config = config or TrainConfig()
    if key is not None:
        check_key_fits(key, data)
        data = without_triggers(data, key)
    dev = resolve_device(device)
    info = _fresh(data, arch, arch_args, config.seed)
    model = build(info, allow_code=True).to(dev)  # the caller named the architecture: its code is theirs
    return _trained(mode, model, info, data, key, config=config, progress=progress, device=dev)


def _trained(
    mode: str,
    model: nn.Module,
    info: ModelInfo,
    data: ImageDataset,
    key: MarkingKey | None,
    *,
    config: TrainConfig,
    progress: bool,
    device: torch.device,
    until: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Trained:
    """Train ``model`` in place, on ``device`` where the caller has put it, on ``data`` (with ``key``'s
    triggers, if any) by the one trainer, and return it with ``info`` recording how (``mode``, the run's
    figures and ``extra``)."""
    result = train(
        model,
        (data.train_x, data.train_y),
        (data.test_x, data.test_y),
        config=config,
        key=key,
        progress=progress,
        stop_at_trigger_acc=until,
        desc=mode,
    )
    return Trained(model, replace(info, meta=_meta(mode, data, result, key, extra or {}, device)), result)


def train_clean(data: ImageDataset, **options: Unpack[FreshOptions]) -> Trained:
    """Train an unmarked model the same way as :func:`embed_from_scratch`, for baselines.

    ``options`` (:class:`FreshOptions`): ``arch`` (a registered architecture or your own
    ``"MODULE:CALLABLE"`` factory), ``arch_args``, ``config``, ``progress`` and ``device``.
    """
    return _fit("clean", data, None, **options)


def embed_from_scratch(data: ImageDataset, key: MarkingKey, **options: Unpack[FreshOptions]) -> Trained:
    """FromScratch: train a fresh model with ``config.triggers_per_batch`` triggers in every batch.

    ``options`` (:class:`FreshOptions`, as :func:`train_clean`'s): ``arch``, ``arch_args``, ``config``,
    ``progress`` and ``device``.

    Then, by default, the trigger phase (:class:`TrainConfig`) runs until every trigger is answered;
    ``config=REFERENCE_CONFIG`` (or ``finish_rounds=0``) trains as the paper's reference code did. The
    model trains, and is returned, on ``device`` (default ``"auto"``: cuda, else mps, else cpu).
    """
    return _fit("from-scratch", data, key, **options)


def embed_pretrained(
    model: nn.Module,
    info: ModelInfo,
    data: ImageDataset,
    key: MarkingKey,
    *,
    config: TrainConfig | None = None,
    until: float = 1.0,
    progress: bool = True,
    device: Device = "auto",
) -> Trained:
    """PreTrained: continue training a copy of ``model`` on the data plus triggers.

    Runs at ``config.lr`` (default 0.01, constant) until the trigger accuracy reaches ``until`` after an
    epoch, or ``config.epochs`` epochs have run, on ``device`` (default ``"auto"``). ``model`` itself is
    not changed.
    """
    check_key_fits(key, data)
    data = without_triggers(data, key)
    if info.num_classes != key.num_classes or info.input_shape != key.input_shape:
        raise BackmarkError(
            f"the model is for {info.num_classes} classes of {info.input_shape} inputs but the key is for "
            f"{key.num_classes} classes of {key.input_shape}"
        )
    config = config or PRETRAINED_CONFIG
    dev = resolve_device(device)
    marked = copy.deepcopy(model).to(dev)
    extra = {"test_acc_before": accuracy(marked, data.test_x, data.test_y), "base": info.meta}
    return _trained(
        "pretrained",
        marked,
        info,
        data,
        key,
        config=config,
        progress=progress,
        device=dev,
        until=until,
        extra=extra,
    )


__all__ = [
    "PRETRAINED_CONFIG",
    "REFERENCE_CONFIG",
    "EpochRecord",
    "FinishResult",
    "FreshOptions",
    "Marker",
    "TrainConfig",
    "TrainResult",
    "Trained",
    "TriggerLoader",
    "accuracy",
    "embed_from_scratch",
    "embed_pretrained",
    "mark_loader",
    "train_clean",
    "without_triggers",
]
