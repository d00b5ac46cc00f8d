"""The trainer moved to :mod:`backmark.training`; these names stay importable from here."""

from backmark.training import Augment, EpochRecord, Schedule, TrainConfig, TrainResult, accuracy, train

__all__ = ["Augment", "EpochRecord", "Schedule", "TrainConfig", "TrainResult", "accuracy", "train"]
