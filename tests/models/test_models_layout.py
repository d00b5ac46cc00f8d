"""Training never takes oneDNN's defective channels-last path (see backmark.models.layout).

The defect shows on AVX2 machines only; ``ONEDNN_MAX_CPU_ISA=AVX2`` makes oneDNN use its AVX2 kernels on
AVX-512 machines too, so the fresh-process test below can fail on any x86 machine. Before the fix it
hung or crashed in 3 of 4 runs of the ResNet at width 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from backmark.models import create_model, list_models, training_memory_format
from backmark.models.layout import has_unsafe_channels_last_conv


@pytest.mark.parametrize(
    ("cin", "kernel", "stride", "unsafe"),
    [
        (1, 1, 2, False),
        (2, 1, 2, True),
        (7, 1, 2, True),
        (8, 1, 2, False),
        (4, 1, 1, False),
        (4, 3, 2, False),
        (4, 1, (1, 2), True),
    ],
)
def test_unsafe_convolution_is_recognised(
    cin: int, kernel: int, stride: int | tuple[int, int], unsafe: bool
) -> None:
    model = nn.Sequential(nn.Conv2d(cin, 16, kernel, stride=stride), nn.ReLU())
    assert has_unsafe_channels_last_conv(model) is unsafe
    expected = torch.contiguous_format if unsafe else torch.channels_last
    assert training_memory_format(model) == expected


@pytest.mark.parametrize("width", [1, 2, 3, 4, 7, 8, 16])
def test_resnet_widths_below_eight_train_in_default_layout(width: int) -> None:
    # the stride-2 shortcuts take width, 2 width and 4 width channels: width 1 has one of 2 and 4
    model = create_model("preact-resnet18", num_classes=10, input_shape=(3, 32, 32), width=width)
    assert (training_memory_format(model) == torch.contiguous_format) is (width <= 7)


def test_cnn_trains_channels_last() -> None:
    model = create_model("cnn", num_classes=10, input_shape=(1, 28, 28))
    assert training_memory_format(model) == torch.channels_last


# Trains every registered architecture at its smallest widths for one short epoch with the real
# trainer, in a fresh interpreter, and reports the memory format the weights ended in.
_SCRIPT = r"""
import json, sys, torch
from backmark.training import TrainConfig, train
from backmark.models import create_model, list_models
torch.set_num_threads(int(sys.argv[1]))
gen = torch.Generator().manual_seed(0)
out = {}
for spec in list_models():
    for width in (1, 2, 3, 4):
        for shape in ((1, 28, 28), (3, 32, 32)):
            model = create_model(spec.name, num_classes=10, input_shape=shape, width=width)
            x = torch.randint(0, 256, (120, *shape), dtype=torch.uint8, generator=gen)
            y = torch.randint(0, 10, (120,), generator=gen)
            config = TrainConfig(epochs=1, batch_size=40)
            train(model, (x, y), (x[:20], y[:20]), config=config, progress=False)
            conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            cl = conv.weight.is_contiguous(memory_format=torch.channels_last)
            out[f"{spec.name}/w{width}/{shape[0]}x{shape[1]}"] = "channels_last" if cl else "default"
print(json.dumps(out))
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("run", range(3))
def test_smallest_widths_of_every_architecture_train_in_fresh_processes(run: int) -> None:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    threads = 1 if run == 0 else 2  # one thread crashed (heap corruption), two hung
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(threads)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("training hung (120 s) on the smallest widths with oneDNN's AVX2 kernels")
    assert proc.returncode == 0, proc.stderr[-2000:]
    layouts = json.loads(proc.stdout.strip().splitlines()[-1])
    names = {spec.name for spec in list_models()}
    assert {key.split("/")[0] for key in layouts} == names
    assert layouts["preact-resnet18/w2/3x32"] == "default"
    assert layouts["cnn/w4/1x28"] == "channels_last"
