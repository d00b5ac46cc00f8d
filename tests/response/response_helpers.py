"""Helpers for the response-mark tests: small CNNs and random query images."""

from __future__ import annotations

import torch
from torch import nn

from backmark.models import create_model

SHAPE = (1, 28, 28)


def cnn(seed: int) -> nn.Module:
    """An untrained CNN: its answers are arbitrary but fixed, all a served model needs to be here."""
    torch.manual_seed(seed)
    return create_model("cnn", num_classes=10, input_shape=SHAPE).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random uint8-valued images as floats in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), generator=g).float() / 255.0
