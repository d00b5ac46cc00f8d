"""A registry of architectures, created by name: ``create_model("cnn", num_classes=10, ...)``.

Every registered model takes inputs in [0, 1] pixel space and normalises them itself (its first layer
holds the mean and standard deviation as buffers), so trigger images and the training data go through the
same preprocessing, and anything that queries the model, a verifier included, sends plain pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from backmark.errors import BackmarkError

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: ModelFactory
    description: str
    input_hint: str  # the input sizes the architecture is made for, e.g. "28x28"


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, description: str, input_hint: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that registers a factory ``f(*, in_channels, num_classes, mean, std, **options)``."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, factory, description, input_hint)
        return factory

    return wrap


def list_models() -> list[ModelSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def create_model(
    name: str,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **options: Any,
) -> nn.Module:
    """Build architecture ``name``; an unknown name or option is a BackmarkError listing valid ones."""
    spec = _REGISTRY.get(name)
    if spec is None:
        valid = ", ".join(sorted(_REGISTRY))
        raise BackmarkError(f"unknown architecture {name!r}; choose one of: {valid}")
    channels = int(input_shape[0])
    mean = tuple(mean) if mean is not None else (0.5,) * channels
    std = tuple(std) if std is not None else (0.5,) * channels
    if len(mean) != channels or len(std) != channels:
        raise BackmarkError(f"mean and std need {channels} values each for input shape {input_shape}")
    try:
        return spec.factory(in_channels=channels, num_classes=num_classes, mean=mean, std=std, **options)
    except TypeError as exc:
        raise BackmarkError(f"bad option for architecture {name!r}: {exc}") from None


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics stored in the state dict."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
