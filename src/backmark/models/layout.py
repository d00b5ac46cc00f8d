"""Which memory format to train a model in: channels-last where it is safe, the default elsewhere.

Channels-last (NHWC) makes CPU convolutions faster (docs/layout.md has the measured ratios), but
oneDNN 3.x, as shipped with torch 2.13 for the CPU, has a defect on machines whose best instruction set
is AVX2 (AMD EPYC without AVX-512, many laptops): the weight gradient of a 1x1 convolution with stride
2 and 2 to 7 input channels, in channels-last layout, hangs with two threads and corrupts the heap
(segfault or abort) with one; the forward pass and the input gradient are fine. Measured here with
``ONEDNN_MAX_CPU_ISA=AVX2``: 1 input channel, 8 or more, stride 1 or 3, 3x3 kernels, and the default
(NCHW) layout all run; so does every case with oneDNN's AVX-512 kernels. The pre-activation ResNet-18
at widths 1 to 7 has such a shortcut convolution (``width -> 2 width`` and so on, stride 2), and a
user's model may too.

:func:`training_memory_format` keeps every model off that path on every machine, whatever its width:
a model with any such convolution trains in the default layout.
"""

from __future__ import annotations

import torch
from torch import nn

# The smallest and largest input-channel counts of the defective 1x1, stride > 1 convolutions.
_UNSAFE_IN_CHANNELS = range(2, 8)


def has_unsafe_channels_last_conv(model: nn.Module) -> bool:
    """True if ``model`` holds a 1x1 convolution with stride > 1 and 2 to 7 input channels."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            pointwise = tuple(module.kernel_size) == (1, 1)
            strided = any(s > 1 for s in module.stride)
            if pointwise and strided and module.in_channels in _UNSAFE_IN_CHANNELS:
                return True
    return False


def training_memory_format(model: nn.Module) -> torch.memory_format:
    """``torch.channels_last`` when ``model`` is safe to train in it, else ``torch.contiguous_format``."""
    if has_unsafe_channels_last_conv(model):
        return torch.contiguous_format
    return torch.channels_last


def to_training_layout(model: nn.Module) -> torch.memory_format:
    """Put ``model``'s 4-d parameters in :func:`training_memory_format` and return that format.

    Batches should be made contiguous in the same format (``x.contiguous(memory_format=fmt)``).
    """
    fmt = training_memory_format(model)
    model.to(memory_format=fmt)  # type: ignore[call-overload]
    return fmt
