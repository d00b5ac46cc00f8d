"""What a saved model says about itself beside its weights, and how its architecture is rebuilt.

Shared by both file formats: backmark checkpoints (:mod:`backmark.models.checkpoint`) and safetensors
(:mod:`backmark.models.safetensors_io`), so that neither imports the other for it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from backmark.errors import BackmarkError
from backmark.infra.readonly import readonly
from backmark.models.custom import TRUST_HINT, build_user_model, is_user_arch
from backmark.models.registry import create_model


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint says about its model, beside the weights.

    ``arch_args`` and ``meta`` are kept as read-only views of deep copies of what is given (a later change
    to the caller's dict does not reach them; ``dataclasses.replace`` makes a changed record); the files
    write them as JSON (``json.dumps(..., default=json_default)``).
    """

    arch: str
    arch_args: Mapping[str, Any]
    input_shape: tuple[int, int, int]
    num_classes: int
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("arch_args", "meta"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a mapping (a JSON object), got {type(value).__name__}")
            # read-only on top; what is nested (config, history) is the record's own deep copy
            object.__setattr__(self, name, readonly(copy.deepcopy(dict(value))))


def build(info: ModelInfo, *, allow_code: bool = False) -> nn.Module:
    """A fresh model of ``info``'s architecture; the user's own (``MODULE:CALLABLE``) only with
    ``allow_code``, since building it imports and runs that code."""
    if is_user_arch(info.arch):
        if not allow_code:
            raise BackmarkError(
                f"the model's architecture is {info.arch}, your own code; loading it imports and runs that "
                f"code: {TRUST_HINT}"
            )
        return build_user_model(
            info.arch, num_classes=info.num_classes, input_shape=info.input_shape, arch_args=info.arch_args
        )
    return create_model(
        info.arch, num_classes=info.num_classes, input_shape=info.input_shape, **info.arch_args
    )
