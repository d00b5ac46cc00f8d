"""What channels-last is worth where backmark uses it, and which models it is kept off (issue 7).

For each model, times training steps (forward, backward, SGD step; batch 102 = 100 images + 2
triggers) in the default NCHW layout and in channels-last, interleaved in one run so the ratio holds
on a shared machine. Models that :func:`backmark.models.training_memory_format` keeps in the default
layout are timed in it only (channels-last would hang or crash them on AVX2 machines).

    .venv/bin/python benchmarks/layout.py                  # writes docs/layout.md
    .venv/bin/python benchmarks/layout.py --steps 5        # a quick look
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from backmark.models import create_model, training_memory_format

CASES = [  # (architecture, width, input shape)
    ("cnn", 32, (1, 28, 28)),
    ("cnn", 32, (3, 32, 32)),
    ("preact-resnet18", 4, (3, 32, 32)),
    ("preact-resnet18", 8, (3, 32, 32)),
    ("preact-resnet18", 16, (3, 32, 32)),
    ("preact-resnet18", 32, (3, 32, 32)),
]


def step_seconds(model: nn.Module, fmt: torch.memory_format, shape: tuple[int, ...], steps: int) -> float:
    """Median seconds of one training step of ``model`` in layout ``fmt`` (after 2 warm-up steps)."""
    model.to(memory_format=fmt)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(102, *shape, generator=gen).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (102,), generator=gen)
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model and layout")
    parser.add_argument("--out", type=Path, default=Path("docs/layout.md"))
    args = parser.parse_args()
    rows = []
    for arch, width, shape in CASES:
        model = create_model(arch, num_classes=10, input_shape=shape, width=width)
        safe = training_memory_format(model) == torch.channels_last
        nchw = step_seconds(model, torch.contiguous_format, shape, args.steps)
        if safe:
            nhwc = step_seconds(model, torch.channels_last, shape, args.steps)
            ratio = f"{nchw / nhwc:.2f}x"
            used = "channels-last"
        else:
            nhwc, ratio, used = float("nan"), "not run (unsafe)", "default"
        params = sum(p.numel() for p in model.parameters())
        name = f"{arch} width {width}, {'x'.join(map(str, shape))}"
        rows.append(
            f"| {name} | {params:,} | {used} | {nchw * 1000:.1f} | "
            + (f"{nhwc * 1000:.1f}" if safe else "-")
            + f" | {ratio} |"
        )
        print(rows[-1], flush=True)
    lines = [
        "# Memory layout: channels-last where it is safe",
        "",
        "oneDNN's AVX2 kernel for the weight gradient of a 1x1, stride-2 convolution with 2 to 7 input",
        "channels hangs or corrupts the heap in channels-last layout (src/backmark/models/layout.py has the",
        "conditions measured). backmark trains such models (the pre-activation ResNet-18 at widths 1 to 7)",
        "in the default layout and every other model in channels-last. What channels-last is worth where",
        "it is used, one training step of 102 images (forward, backward, SGD), median of "
        f"{args.steps} steps:",
        "",
        "| model | parameters | layout used | ms/step NCHW | ms/step channels-last | speed-up |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"{time.strftime('%Y-%m-%d')}. Reproduce: `.venv/bin/python benchmarks/layout.py`.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
