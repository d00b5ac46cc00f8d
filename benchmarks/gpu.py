"""Mark a CIFAR-10-shaped pre-activation ResNet-18 on one GPU, with bf16 and torch.compile on and off.

For each setting it trains FromScratch with backmark's trainer (data on the GPU as uint8, random crop and
flip as batched tensor work, triggers in every batch, then the trigger phase until every trigger is
answered) and reports images per second (the fastest scheduled epoch, so compilation is not counted),
the time to 100% trigger accuracy (everything included: compilation, evaluation after every epoch), test
accuracy, and peak GPU memory. Data: CIFAR-10 from ``--data cifar10:DIR`` when given, else synthetic
CIFAR-shaped data (each class a fixed random smooth pattern plus noise, so it can be learned; say so when
reporting). The goal on the day a GPU is lent: a marked ResNet-18 in under 2 minutes.

    bash benchmarks/gpu.sh                      # on the GPU machine, from a bare checkout
    python benchmarks/gpu.py --smoke            # a tiny run of every code path, on any device (CPU too)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from backmark.data import ImageDataset, load_dataset
from backmark.embed import embed_from_scratch
from backmark.keys import generate_key
from backmark.training import TrainConfig, resolve_device
from backmark.verify import verify


def synthetic_cifar(train: int, test: int, seed: int = 0) -> ImageDataset:
    """CIFAR-10-shaped data that can be learned: per class a smooth random pattern, plus pixel noise."""
    gen = torch.Generator().manual_seed(seed)
    patterns = F.interpolate(torch.rand(10, 3, 8, 8, generator=gen), size=32, mode="bilinear")

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=gen)
        x = 0.6 * patterns[y] + 0.4 * torch.rand(n, 3, 32, 32, generator=gen)
        return (x * 255).round().clamp(0, 255).to(torch.uint8), y

    (tx, ty), (vx, vy) = draw(train), draw(test)
    classes = tuple(f"class-{i}" for i in range(10))
    return ImageDataset(name="synthetic-cifar", train_x=tx, train_y=ty, test_x=vx, test_y=vy, classes=classes)


def peak_memory(device: torch.device) -> float:
    """Peak memory in GiB: allocated on the GPU since the last reset, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run(
    data: ImageDataset, args: argparse.Namespace, device: torch.device, *, bf16: bool, compiled: bool
) -> dict[str, object]:
    key = generate_key(num_classes=10, input_shape=data.input_shape, size=args.triggers, seed=b"\x0b" * 32)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        triggers_per_batch=max(1, round(args.batch_size * 0.02)),  # the paper's 2 per 100
        finish_triggers_per_batch=max(20, round(args.batch_size * 0.2)),
        finish_steps=max(1, 100 * 100 // args.batch_size),
        augment="flip-crop",
        finish_rounds=args.finish_rounds,
        bf16=bf16,
        compile=compiled,
    )
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    marked = embed_from_scratch(
        data, key, arch="preact-resnet18", arch_args={"width": args.width}, config=config,
        progress=not args.quiet, device=device,
    )  # fmt: skip
    total = time.perf_counter() - start
    history = marked.result.history
    elapsed, to_marked = 0.0, None
    for record in history:
        elapsed += record.seconds
        if record.trigger_acc == 1.0 and to_marked is None:
            to_marked = elapsed
    epochs = [h.seconds for h in history if h.phase == "train"]
    evidence = verify(marked.model, key, key.verification_key()).evidence
    return {
        "bf16": bf16,
        "compile": compiled,
        "images_per_second": len(data.train_x) / min(epochs),
        "first_epoch_seconds": epochs[0],
        "seconds_to_100pct_triggers": to_marked,
        "total_seconds": total,
        "test_acc": marked.result.test_acc,
        "trigger_acc": marked.result.trigger_acc,
        "verified": evidence.verified,
        "trigger_rounds": marked.result.finish_rounds_run,
        "peak_memory_gib": peak_memory(device),
        "config": asdict(config),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (default), cuda, mps or cpu")
    parser.add_argument("--data", help="cifar10:DIR for real CIFAR-10 (default: synthetic CIFAR-shaped data)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.2, help="peak learning rate (one-cycle)")
    parser.add_argument("--width", type=int, default=64, help="ResNet width (64: the full ResNet-18)")
    parser.add_argument("--triggers", type=int, default=100)
    parser.add_argument("--finish-rounds", type=int, default=20, help="at most, of the trigger phase")
    parser.add_argument("--settings", default="fp32,bf16,fp32+compile,bf16+compile")
    parser.add_argument("--smoke", action="store_true", help="tiny data and model: checks the code paths")
    parser.add_argument("--out", type=Path, default=Path("gpu-benchmark.json"))
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.smoke:
        args.epochs, args.batch_size, args.width, args.triggers, args.finish_rounds = 1, 100, 8, 20, 2
        if device.type != "cuda":  # bf16 is very slow on most CPUs and compile costs minutes: path only
            args.settings = "fp32,bf16"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")  # TF32 matmuls, as cuDNN convolutions already do
    if args.data:
        data = load_dataset(args.data)
        source = args.data
    else:
        train, test = (1000, 200) if args.smoke else (50_000, 10_000)
        data = synthetic_cifar(train, test)
        source = f"synthetic CIFAR-shaped data ({train} training, {test} test images; no CIFAR-10 given)"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}; data: {source}", file=sys.stderr)
    rows = []
    for setting in args.settings.split(","):
        parts = set(setting.split("+"))
        row = run(data, args, device, bf16="bf16" in parts, compiled="compile" in parts)
        rows.append(row)
        t100 = row["seconds_to_100pct_triggers"]
        print(
            f"| {setting} | {row['images_per_second']:.0f} | {row['first_epoch_seconds']:.1f} | "
            + ("not reached" if t100 is None else f"{t100:.1f}")
            + f" | {row['test_acc']:.2%} | {row['trigger_acc']:.0%} | {row['peak_memory_gib']:.2f} |",
            flush=True,
        )
    report = {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "data": source,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "runs": rows,
    }
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(
        "columns: setting | images/s | first epoch s (compilation included) | s to 100% triggers | "
        f"test acc | trigger acc | peak memory GiB; written to {args.out}",
        file=sys.stderr,
    )
    return 0 if args.smoke or all(r["verified"] for r in rows) else 1  # a smoke run checks paths only


if __name__ == "__main__":
    sys.exit(main())
