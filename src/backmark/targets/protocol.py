"""What verification queries: the :class:`Target` protocol, and :class:`CheckedTarget` for targets that can
say whether they fit a key before any image is sent.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Target(Protocol):
    """A classifier seen from outside: float (B, C, H, W) images in [0, 1] in, int64 (B,) labels out."""

    def predict(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ScoredTarget(Target, Protocol):
    """A target that also gives its scores: float (B, K) outputs, taken as logits (a local model)."""

    def scores(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class CheckedTarget(Target, Protocol):
    """A target that can say, without being sent a single image, whether it fits a key.

    ``check_fits`` reads what the target declares about itself (a server's metadata and readiness, an
    exported file's input and output shapes) and raises BackmarkError if it cannot answer
    ``num_classes``-class labels for (C, H, W) = ``input_shape`` images (``num_classes`` None: labels
    of any class count, for the label-free test; only the input is checked). Verification calls it before the
    first trigger is sent, so a verification bound to fail reveals nothing.
    """

    def check_fits(self, *, input_shape: tuple[int, int, int], num_classes: int | None) -> None: ...


def check_target(target: Target, *, input_shape: tuple[int, int, int], num_classes: int | None) -> None:
    """Run ``target``'s own :class:`CheckedTarget` check if it has one; targets without one pass."""
    if isinstance(target, CheckedTarget):
        target.check_fits(input_shape=input_shape, num_classes=num_classes)
