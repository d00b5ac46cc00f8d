"""The pre-activation ResNet-18 of the paper's reference code, for 32x32 inputs, with a width argument.

He et al., "Identity Mappings in Deep Residual Networks" (2016). ``width=64`` is the full model
(about 11.17M parameters for 10 classes); smaller widths make CPU runs practical.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from backmark.models.registry import Normalize, register_model


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = out + skip
        return out


@register_model(
    "preact-resnet18",
    description="pre-activation ResNet-18 of the reference code; option width (64 = full)",
    input_hint="32x32",
)
class PreActResNet18(nn.Module):
    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        width: int = 64,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        cin = width
        for stage, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**stage
            layers += [PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)  # the output layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(self.normalize(x)))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        logits: torch.Tensor = self.fc(out)
        return logits
