"""Architectures by name, and checkpoints that never pickle a module."""

from backmark.models import cnn as _cnn  # noqa: F401  (registers "cnn")
from backmark.models import resnet as _resnet  # noqa: F401  (registers "preact-resnet18")
from backmark.models.checkpoint import ModelInfo, build, load_checkpoint, save_checkpoint
from backmark.models.layout import training_memory_format
from backmark.models.registry import ModelSpec, Normalize, create_model, list_models, register_model

__all__ = [
    "ModelInfo",
    "ModelSpec",
    "Normalize",
    "build",
    "create_model",
    "list_models",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
    "training_memory_format",
]
