"""Training: the one trainer that ``train``, both embedding modes and every attack that trains use.

- :mod:`~backmark.training.batches`: data on the device as uint8, batched augmentation, trigger mixing;
- :mod:`~backmark.training.schedule`: the learning-rate schedules;
- :mod:`~backmark.training.loop`: the training step (its loss pluggable), the attacks' epoch loop and
  :func:`accuracy`;
- :mod:`~backmark.training.trainer`: :func:`train` and its :class:`TrainConfig` (embedding is training
  with a key);
- :mod:`~backmark.training.device` and :mod:`~backmark.training.distributed`: where it runs, on one
  device or data-parallel under ``torchrun``.
"""

from backmark.training.batches import Augment, Batch, DeviceBatches, Triggers, TriggerStream
from backmark.training.device import Device, model_device, resolve_device
from backmark.training.distributed import World, world
from backmark.training.loop import (
    EVAL_BATCH,
    WEIGHT_DECAY,
    Loss,
    Stepper,
    accuracy,
    cross_entropy,
    run_epochs,
    sgd,
)
from backmark.training.schedule import SCHEDULES, Schedule, lr_factor
from backmark.training.trainer import EpochRecord, TrainConfig, TrainResult, key_tensors, train

__all__ = [
    "EVAL_BATCH",
    "SCHEDULES",
    "WEIGHT_DECAY",
    "Augment",
    "Batch",
    "Device",
    "DeviceBatches",
    "EpochRecord",
    "Loss",
    "Schedule",
    "Stepper",
    "TrainConfig",
    "TrainResult",
    "TriggerStream",
    "Triggers",
    "World",
    "accuracy",
    "cross_entropy",
    "key_tensors",
    "lr_factor",
    "model_device",
    "resolve_device",
    "run_epochs",
    "sgd",
    "train",
    "world",
]
