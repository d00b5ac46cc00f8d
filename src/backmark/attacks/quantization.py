"""Weight quantisation: round every weight to one of 2^b evenly spaced values per tensor.

Uniform affine quantisation as in Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference" (CVPR 2018, https://arxiv.org/abs/1712.05877), applied after training
with no fine-tuning; Lukas et al., SoK 2022 (https://arxiv.org/abs/2108.04974) evaluate watermarks against
it at 5 bits. The model stays in float32; only the values change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from backmark.attacks.base import AttackData, Monitor, WeightAttack, require_options
from backmark.attacks.registry import register_attack


@torch.no_grad()
def quantize_tensor(t: torch.Tensor, bits: int) -> None:
    """Round ``t`` in place to ``lo + k * step``, k in 0..2^bits - 1, spanning its own [min, max]."""
    lo, hi = float(t.min()), float(t.max())
    if hi == lo:
        return
    levels = 2**bits - 1
    step = (hi - lo) / levels
    t.copy_(torch.round((t - lo) / step).clamp_(0, levels) * step + lo)


@register_attack("quantize")
@dataclass(frozen=True, kw_only=True)
class WeightQuantization(WeightAttack):
    """Weight quantisation: every parameter tensor keeps at most 2^bits distinct values.

    Paper: Jacob et al., CVPR 2018 (https://arxiv.org/abs/1712.05877); as a removal attack, Lukas et al.,
    SoK 2022 (https://arxiv.org/abs/2108.04974). Per-tensor, min-max range, round to nearest.

    Arguments:
        bits (int): bits per weight (default 5, the SoK's setting; 1..16).
        seed (int): unused (quantisation is deterministic); kept for a uniform interface.

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K), unchanged. Parameters (weights and
        biases, batch-norm scales and shifts) are quantised; buffers such as batch-norm statistics and
        the normalisation layer's mean and std are not.

    Example:
        >>> stolen = WeightQuantization(bits=4)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("bits",)

    bits: int = 5

    def check(self) -> None:
        require_options(self, {"bits": "1..16"})

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        for param in model.parameters():
            if param.is_floating_point():
                quantize_tensor(param, self.bits)
        return model
