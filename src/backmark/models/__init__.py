"""Architectures by name, and checkpoints that never pickle a module."""

from backmark.models import cnn as _cnn  # noqa: F401  (registers "cnn")
from backmark.models import resnet as _resnet  # noqa: F401  (registers "preact-resnet18")
from backmark.models.checkpoint import load_checkpoint, save_checkpoint
from backmark.models.custom import is_user_arch
from backmark.models.info import ModelInfo, build
from backmark.models.layout import training_memory_format
from backmark.models.registry import (
    ModelSpec,
    Normalize,
    create_model,
    get_model,
    list_models,
    register_model,
)
from backmark.models.safetensors_io import load_safetensors, save_safetensors

__all__ = [
    "ModelInfo",
    "ModelSpec",
    "Normalize",
    "build",
    "create_model",
    "get_model",
    "is_user_arch",
    "list_models",
    "load_checkpoint",
    "load_safetensors",
    "register_model",
    "save_checkpoint",
    "save_safetensors",
    "training_memory_format",
]
