"""Input transformations at inference: the suspect changes every query before its model sees it.

Defences against adversarial examples first (Guo et al., "Countering Adversarial Images using Input
Transformations", ICLR 2018, https://arxiv.org/abs/1711.00117; Xu et al., "Feature Squeezing", NDSS 2018,
https://arxiv.org/abs/1704.01155), then removal attacks on watermarks (Lukas et al., SoK 2022,
https://arxiv.org/abs/2108.04974: JPEG quality 95, Gaussian noise sigma 0.01, smoothing, quantisation).
Each attack returns :class:`TransformedModel`, the transform in front of a copy of the model: still one
``nn.Module``, queried with [0, 1] pixels, that can be saved or exported like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from backmark.attacks._jpeg import JpegCompression
from backmark.attacks.base import AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.registry import register_attack


class TransformedModel(nn.Module):
    """``model(transform(x))``: float (B, C, H, W) in [0, 1] in, the model's logits out."""

    def __init__(self, transform: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.transform = transform
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(self.transform(x))
        return out


class GaussianNoise(nn.Module):
    """Add N(0, sigma^2) noise to each pixel (fresh at every call), then clip to [0, 1]."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.sigma * torch.randn_like(x)).clamp(0.0, 1.0)


class GaussianSmoothing(nn.Module):
    """Blur each channel with a Gaussian of ``sigma`` pixels (kernel 2*ceil(2 sigma)+1, reflected edges)."""

    kernel: torch.Tensor

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        radius = max(1, math.ceil(2 * sigma))
        taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
        self.register_buffer("kernel", (taps / taps.sum()).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, r = x.shape[1], len(self.kernel) // 2
        rows = self.kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
        cols = self.kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), rows, groups=c)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), cols, groups=c)


class InputQuantization(nn.Module):
    """Round each pixel to one of 2^bits evenly spaced levels in [0, 1] (bit-depth reduction)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = float(2**self.bits - 1)
        return torch.round(x.clamp(0.0, 1.0) * levels) / levels


@dataclass(frozen=True, kw_only=True)
class _InputAttack(WeightAttack):
    def transform(self) -> nn.Module:
        raise NotImplementedError

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        return TransformedModel(self.transform(), model)


@register_attack("jpeg")
@dataclass(frozen=True, kw_only=True)
class Jpeg(_InputAttack):
    """JPEG: every query is JPEG-compressed and decompressed before the model sees it.

    Paper: Guo et al., ICLR 2018 (https://arxiv.org/abs/1711.00117); SoK 2022 setting quality 95.

    Arguments:
        quality (int): JPEG quality, IJG scale (default 95; 1..100).

    Shape:
        float (B, C, H, W) in [0, 1], C = 1 or 3 -> logits (B, K); any H, W (edges padded to 8x8 blocks).

    Example:
        >>> served = Jpeg(quality=75)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("quality",)
    quality: int = 95

    def check(self) -> None:
        require_options(self, {"quality": "1..100"})

    def transform(self) -> nn.Module:
        return JpegCompression(self.quality)


@register_attack("noise")
@dataclass(frozen=True, kw_only=True)
class Noise(_InputAttack):
    """Gaussian noise: every query gets fresh N(0, sigma^2) noise per pixel, clipped to [0, 1].

    Paper: Lukas et al., SoK 2022 (https://arxiv.org/abs/2108.04974), sigma 0.01.

    Arguments:
        sigma (float): noise standard deviation in [0, 1] pixel units (default 0.01; (0, 1]).

    Shape:
        float (B, C, H, W) in [0, 1] -> logits (B, K).

    Example:
        >>> served = Noise(sigma=0.05)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("sigma",)
    sigma: float = 0.01

    def check(self) -> None:
        require_options(self, {"sigma": "(0, 1]"})

    def transform(self) -> nn.Module:
        return GaussianNoise(self.sigma)


@register_attack("smooth")
@dataclass(frozen=True, kw_only=True)
class Smooth(_InputAttack):
    """Smoothing: every query is blurred with a Gaussian filter.

    Paper: Xu et al., Feature Squeezing, NDSS 2018 (https://arxiv.org/abs/1704.01155), who used local
    smoothing; SoK 2022 (https://arxiv.org/abs/2108.04974).

    Arguments:
        sigma (float): standard deviation of the Gaussian in pixels (default 1.0; (0, 5]).

    Shape:
        float (B, C, H, W) in [0, 1] -> logits (B, K); H, W larger than the kernel radius.

    Example:
        >>> served = Smooth(sigma=0.5)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("sigma",)
    sigma: float = 1.0

    def check(self) -> None:
        require_options(self, {"sigma": "(0, 5]"})

    def transform(self) -> nn.Module:
        return GaussianSmoothing(self.sigma)


@register_attack("input-quantize")
@dataclass(frozen=True, kw_only=True)
class InputQuantize(_InputAttack):
    """Input quantisation: every query's pixels are rounded to 2^bits levels (bit-depth reduction).

    Paper: Xu et al., Feature Squeezing, NDSS 2018 (https://arxiv.org/abs/1704.01155); SoK 2022.

    Arguments:
        bits (int): bits per pixel kept (default 4, i.e. 16 levels; 1..8).

    Shape:
        float (B, C, H, W) in [0, 1] -> logits (B, K).

    Example:
        >>> served = InputQuantize(bits=3)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("bits",)
    bits: int = 4

    def check(self) -> None:
        require_options(self, {"bits": "1..8"})

    def transform(self) -> nn.Module:
        return InputQuantization(self.bits)
