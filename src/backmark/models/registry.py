"""A registry of architectures, created by name: ``create_model("cnn", num_classes=10, ...)``.

``@register_model("cnn", description=..., input_hint=...)`` adds one, :func:`get_model` finds one and
:func:`list_models` lists them (the shape of every plugin table, :mod:`backmark.infra.plugins`).

Every registered model takes inputs in [0, 1] pixel space and normalises them itself (its first layer
holds the mean and standard deviation as buffers), so trigger images and the training data go through the
same preprocessing, and anything that queries the model, a verifier included, sends plain pixels.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from backmark.errors import BackmarkError
from backmark.infra.plugins import Registry

ModelFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFactory)


# what create_model passes to every factory itself; everything else in a factory's signature is an option
_GIVEN = ("in_channels", "num_classes", "mean", "std")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: ModelFactory
    description: str
    input_hint: str  # the input sizes the architecture is made for, e.g. "28x28"
    options: Mapping[str, Any]  # the factory's own keyword options and their defaults: {"width": 32, ...}


_MODELS: Registry[ModelSpec] = Registry("architecture", also="or MODULE:CALLABLE (your own factory)")


def _options(name: str, factory: ModelFactory) -> Mapping[str, Any]:
    """The options of ``factory`` read from its signature; a factory that cannot be checked is refused."""
    params = inspect.signature(factory).parameters
    missing = [p for p in _GIVEN if p not in params]
    loose = [p.name for p in params.values() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    undefaulted = [p.name for p in params.values() if p.name not in _GIVEN and p.default is p.empty]
    if missing or loose or undefaulted:
        raise TypeError(
            f"model factory {name!r} must take only keyword arguments {', '.join(_GIVEN)} and options "
            f"with defaults (missing {missing}, not keyword-only {loose}, without default {undefaulted})"
        )
    return types.MappingProxyType({p.name: p.default for p in params.values() if p.name not in _GIVEN})


def register_model(name: str, *, description: str, input_hint: str) -> Callable[[F], F]:
    """Decorator that registers ``f(*, in_channels, num_classes, mean, std, OPTION=DEFAULT, ...)``.

    ``f`` is a function or an ``nn.Module`` class. The options are read from its signature, so
    :func:`create_model` can refuse an unknown one by name before anything is built.
    """

    def spec(factory: F) -> ModelSpec:
        return ModelSpec(name, factory, description, input_hint, _options(name, factory))

    return _MODELS.register(name, spec)


def get_model(name: str) -> ModelSpec:
    """The architecture registered as ``name`` (its factory and options, not a built model: see
    :func:`create_model`); an unknown name is a one-line BackmarkError that lists the valid ones."""
    return _MODELS.get(name)


def list_models() -> list[ModelSpec]:
    """Every registered architecture, by name."""
    return _MODELS.entries()


def create_model(
    name: str,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **options: Any,
) -> nn.Module:
    """Build architecture ``name``; an unknown name or option is a BackmarkError listing valid ones.

    ``options`` are the architecture's own (see :attr:`ModelSpec.options`); those not given keep their
    defaults.
    """
    spec = get_model(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(sorted(spec.options)) or "none"
        raise BackmarkError(f"architecture {name} has no option {unknown[0]!r}; its options: {valid}")
    for key, value in options.items():
        _check_type(name, key, value, spec.options[key])
    channels = int(input_shape[0])
    mean = tuple(mean) if mean is not None else (0.5,) * channels
    std = tuple(std) if std is not None else (0.5,) * channels
    if len(mean) != channels or len(std) != channels:
        raise BackmarkError(f"mean and std need {channels} values each for input shape {input_shape}")
    return spec.factory(in_channels=channels, num_classes=num_classes, mean=mean, std=std, **options)


def _check_type(arch: str, key: str, value: Any, default: Any) -> None:
    """An option takes the type of its default (an int where a float is expected, too)."""
    if default is None:
        return
    wanted = type(default)
    ok = isinstance(value, wanted) and isinstance(value, bool) == isinstance(default, bool)
    if wanted is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise BackmarkError(f"option {key} of architecture {arch} must be a {wanted.__name__}, got {value!r}")


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
