"""How fast backmark's trainer is, measured side by side in one run so the ratios hold on a shared machine.

1. speed: images per second of backmark's trainer against a loop in the style of the paper's reference
   code (a torch DataLoader over a Dataset that converts, augments and normalises one image at a time
   with PIL and numpy, as torchvision's transforms would; the trigger batch concatenated to every batch),
   same model, same data, same batch: Fashion-MNIST without augmentation, and synthetic 3x32x32 data
   (CIFAR-10-shaped; CIFAR-10 is not on this machine) with random crop (4-pixel padding) and flip.
2. overhead: the same epochs with and without triggers (2 per batch of 100).
3. flops: achieved FLOP/s of one training step against a large matmul on the same threads, and where a
   step's time goes (a profile).
5. scaling: time per epoch against training-set size and against trigger-set size, and the time of
   verifying 10,000 triggers (one batched pass).

    python benchmarks/trainer.py                           # every part; writes docs/benchmarks.md
    python benchmarks/trainer.py --parts speed,overhead    # some parts; prints, writes nothing
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from backmark.data import ImageDataset, load_dataset
from backmark.keys import MarkingKey, generate_key
from backmark.models import create_model
from backmark.models.layout import to_training_layout
from backmark.targets import ModuleTarget
from backmark.training import Batch, DeviceBatches, Stepper, TrainConfig, sgd, train
from backmark.training.trainer import key_tensors
from backmark.verify import verify

BATCH = 100
TRIGGERS = 2  # per batch, the reference code's
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]  # --clock cpu: the process's CPU time, steadier on a machine others load


# ----------------------------------------------------------------------------------------- reference loop
class ReferenceDataset(Dataset[tuple[torch.Tensor, int]]):
    """One image at a time, as torchvision's transforms do it: PIL image, random crop from the image
    padded by 4 pixels and random horizontal flip (``augment``), to a float tensor, normalised."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool) -> None:
        self.images, self.labels, self.augment = images, labels, augment  # uint8 (N, H, W, C)
        c = images.shape[-1]
        self.mean = np.full((c, 1, 1), 0.5, dtype=np.float32)
        self.std = np.full((c, 1, 1), 0.25, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        array = self.images[i]
        img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        if self.augment:  # transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()
            w, h = img.size
            img = ImageOps.expand(img, border=4, fill=0)
            top, left = random.randint(0, 8), random.randint(0, 8)
            img = img.crop((left, top, left + w, top + h))
            if random.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = np.asarray(img, dtype=np.float32) / 255.0  # transforms.ToTensor()
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        x = (x - self.mean) / self.std  # transforms.Normalize(mean, std)
        return torch.from_numpy(np.ascontiguousarray(x)), int(self.labels[i])


def reference_epoch(
    model: nn.Module, data: ImageDataset, key: MarkingKey, n: int, augment: bool, fmt: torch.memory_format
) -> float:
    """Seconds of one epoch over ``n`` images of the reference-style loop (train loss and accuracy read
    every step with ``.item()``, as the reference code does)."""
    images = data.train_x[:n].permute(0, 2, 3, 1).numpy()
    loader = DataLoader(
        ReferenceDataset(images, data.train_y[:n].numpy(), augment), batch_size=BATCH, shuffle=True
    )
    tx, ty = key.trigger_tensors()
    wm = [(tx[i : i + TRIGGERS], ty[i : i + TRIGGERS]) for i in range(0, key.n, TRIGGERS)]
    model.to(memory_format=fmt)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    start = clock()
    train_loss, correct = 0.0, 0
    for k, (x, y) in enumerate(loader):
        wx, wy = wm[k % len(wm)]
        x, y = torch.cat([x, wx]), torch.cat([y, wy])
        out = model(x.contiguous(memory_format=fmt))
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        train_loss += loss.item()
        correct += int(out.argmax(1).eq(y).sum().item())
    return clock() - start


def reference_data_seconds(data: ImageDataset, key: MarkingKey, n: int, augment: bool) -> float:
    """Seconds the reference-style pipeline alone takes to deliver ``n`` images with their triggers."""
    images = data.train_x[:n].permute(0, 2, 3, 1).numpy()
    loader = DataLoader(
        ReferenceDataset(images, data.train_y[:n].numpy(), augment), batch_size=BATCH, shuffle=True
    )
    tx, ty = key.trigger_tensors()
    start = clock()
    for x, y in loader:
        torch.cat([x, tx[:TRIGGERS]]), torch.cat([y, ty[:TRIGGERS]])
    return clock() - start


def backmark_epoch(model: nn.Module, data: ImageDataset, key: MarkingKey, n: int, augment: bool) -> float:
    """Seconds of one epoch of backmark's trainer over ``n`` images with the key's triggers (evaluation on
    100 test images, as small as it goes, so the two loops do the same work)."""
    config = TrainConfig(
        epochs=1, batch_size=BATCH, triggers_per_batch=TRIGGERS, finish_rounds=0,
        augment="flip-crop" if augment else "none",
    )  # fmt: skip
    start = clock()
    train(model, (data.train_x[:n], data.train_y[:n]), (data.test_x[:100], data.test_y[:100]),
          config=config, key=key, progress=False)  # fmt: skip
    return clock() - start


def synthetic_cifar(n: int, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return ImageDataset(
        name="synthetic-3x32x32", train_x=x, train_y=y, test_x=x[:1000], test_y=y[:1000],
        classes=tuple(str(i) for i in range(10)),
    )  # fmt: skip


def _key(shape: tuple[int, int, int], size: int = 100) -> MarkingKey:
    return generate_key(num_classes=10, input_shape=shape, size=size, seed=b"\x09" * 32)


def part_speed(fashion: ImageDataset, n: int, reps: int) -> tuple[list[str], list[str]]:
    rows, notes = [], []
    for data, augment in ((fashion, False), (synthetic_cifar(n), True)):
        key = _key(data.input_shape)
        times: dict[str, list[float]] = {"ref": [], "ref-cl": [], "bm": [], "ref-data": []}
        for m in (n // 10, n // 10):  # warm-up: oneDNN's first steps of a shape in a process are slow
            reference_epoch(_model(data), data, key, m, augment, torch.contiguous_format)
            reference_epoch(_model(data), data, key, m, augment, torch.channels_last)
            backmark_epoch(_model(data), data, key, m, augment)
        for _ in range(reps):  # interleaved, so a busy moment of the machine hits all three
            times["ref"].append(reference_epoch(_model(data), data, key, n, augment, torch.contiguous_format))
            times["ref-cl"].append(reference_epoch(_model(data), data, key, n, augment, torch.channels_last))
            times["bm"].append(backmark_epoch(_model(data), data, key, n, augment))
            times["ref-data"].append(reference_data_seconds(data, key, n, augment))
        med = {k: statistics.median(v) for k, v in times.items()}
        shape = "x".join(map(str, data.input_shape))
        what = f"{data.name} {shape}, " + ("crop+flip" if augment else "no augmentation")
        rows.append(
            f"| {what} | {n / med['ref']:.0f} | {n / med['ref-cl']:.0f} | {n / med['bm']:.0f} | "
            f"**{med['ref'] / med['bm']:.2f}x** | {med['ref-cl'] / med['bm']:.2f}x |"
        )
        print(rows[-1], flush=True)
        pipeline, share = med["ref-data"] / n * 1e6, med["ref-data"] / med["ref"]
        notes.append(
            f"{what}: the reference pipeline alone (DataLoader, per-image PIL and numpy work, collation, "
            f"the trigger batch) takes {pipeline:.0f} microseconds an image, {share:.0%} "
            f"of the reference loop's time; backmark's whole epoch takes {med['bm'] / n * 1e6:.0f} "
            "microseconds an image."
        )
        print(notes[-1], flush=True)
    return rows, notes


def _model(data: ImageDataset) -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn", num_classes=10, input_shape=data.input_shape)


# ---------------------------------------------------------------------------------------------- overhead
def part_overhead(fashion: ImageDataset, n: int, reps: int) -> list[str]:
    data = fashion.subset(train=n, test=1000, seed=0)
    key = _key(data.input_shape)
    config = TrainConfig(epochs=1, finish_rounds=0)
    times: dict[str, list[float]] = {"clean": [], "marked": []}
    for rep in range(reps + 1):  # the first round warms up and is not counted
        runs = (("clean", None), ("marked", key))
        for name, k in runs if rep % 2 else runs[::-1]:  # alternate which goes first
            start = clock()
            train(_model(data), (data.train_x, data.train_y), (data.test_x, data.test_y), config=config,
                  key=k, progress=False)  # fmt: skip
            if rep:
                times[name].append(clock() - start)
    clean, marked = statistics.median(times["clean"]), statistics.median(times["marked"])
    row = f"| {n} | {clean:.2f} | {marked:.2f} | **{marked / clean:.3f}x** |"
    print(row, flush=True)
    return [row]


# ------------------------------------------------------------------------------------------------- flops
def _median_seconds(fn: Callable[[], object], reps: int, warm: int = 2) -> float:
    times = []
    for i in range(reps + warm):
        start = clock()
        fn()
        if i >= warm:
            times.append(clock() - start)
    return statistics.median(times)


def part_flops(steps: int) -> tuple[list[str], list[str]]:
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    matmul = 2 * n**3 / _median_seconds(lambda: a @ b, 5)
    rows, profile = [], []
    for shape in ((1, 28, 28), (3, 32, 32)):
        step, batches = _stepper(shape)
        with FlopCounterMode(display=False) as counter:
            step(next(batches))
        flops = counter.get_total_flops()
        seconds = _median_seconds(lambda: step(next(batches)), steps)  # noqa: B023  (called right here)
        achieved = flops / seconds
        name = f"cnn, {'x'.join(map(str, shape))}, batch {BATCH + TRIGGERS}"
        rows.append(
            f"| {name} | {flops / 1e9:.3f} | {seconds * 1000:.1f} | {achieved / 1e9:.1f} | "
            f"{matmul / 1e9:.1f} | **{achieved / matmul:.0%}** |"
        )
        print(rows[-1], flush=True)
        if shape == (3, 32, 32):
            profile = _profile(step, batches)
    return rows, profile


def _stepper(shape: tuple[int, int, int]) -> tuple[Stepper, Iterator[Batch]]:
    """A training step of the cnn, and endless batches of random uint8 images made as in training."""
    model = create_model("cnn", num_classes=10, input_shape=shape)
    fmt = to_training_layout(model)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2000, *shape), dtype=torch.uint8)
    y = torch.randint(0, 10, (2000,))
    batches = DeviceBatches(x, y, batch_size=BATCH + TRIGGERS, generator=gen, memory_format=fmt)

    def endless() -> Iterator[Batch]:
        while True:
            yield from batches

    step = Stepper(model, sgd(model.parameters(), lr=0.01), memory_format=fmt, device=torch.device("cpu"))
    return step, endless()


def _profile(step: Stepper, it: Iterator[Batch]) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step(next(it))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    lines = [f"| {e.key} | {e.self_cpu_time_total / total:.1%} |" for e in events[:10]]
    for line in lines:
        print(line, flush=True)
    return lines


# ----------------------------------------------------------------------------------------------- scaling
def part_scaling(fashion: ImageDataset) -> tuple[list[str], list[str], str]:
    config = TrainConfig(epochs=1, finish_rounds=0)
    key100 = _key(fashion.input_shape)
    size_rows = []
    for n in (10_000, 20_000, 40_000, 60_000):
        data = fashion.subset(train=n, test=1000, seed=0)
        r = train(_model(data), (data.train_x, data.train_y), (data.test_x, data.test_y), config=config,
                  key=key100, progress=False)  # fmt: skip
        size_rows.append(f"| {n:,} | 100 | {r.seconds:.2f} | {r.seconds / n * 1e6:.0f} |")
        print(size_rows[-1], flush=True)
    data = fashion.subset(train=10_000, test=1000, seed=0)
    key_rows = []
    verify_line = ""
    for size in (100, 1_000, 10_000):
        start = clock()
        key = _key(fashion.input_shape, size)
        made = clock() - start
        model = _model(data)
        r = train(model, (data.train_x, data.train_y), (data.test_x, data.test_y), config=config,
                  key=key, progress=False)  # fmt: skip
        key_rows.append(f"| 10,000 | {size:,} | {r.seconds:.2f} | {made:.1f} |")
        print(key_rows[-1], flush=True)
        if size == 10_000:
            vk = key.verification_key()
            start = clock()
            result = verify(model, key, vk)
            total = clock() - start
            images, _ = key_tensors(key)
            target = ModuleTarget(model)
            start = clock()
            target.predict(images.float().div(255.0))
            query = clock() - start
            verify_line = (
                f"Verifying 10,000 triggers: {total:.2f} s in all (opening the 20,000 commitments "
                f"included), of which {query:.2f} s is the one batched pass of the model over them "
                f"({result.evidence.matches} matches)."
            )
            print(verify_line, flush=True)
    return size_rows, key_rows, verify_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--parts", default="speed,overhead,flops,scaling")
    parser.add_argument("--n", type=int, default=5000, help="images per timed epoch (speed)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (speed, overhead)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="what the seconds are")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)
    parts = set(args.parts.split(","))
    fashion = load_dataset("fashion-mnist", download=False)
    global clock
    clock = CLOCKS[args.clock]
    started = time.perf_counter()
    out: dict[str, object] = {}
    if "speed" in parts:
        out["speed"] = part_speed(fashion, args.n, args.reps)
    if "overhead" in parts:
        out["overhead"] = part_overhead(fashion, 10_000, args.reps)
    if "flops" in parts:
        out["flops"] = part_flops(20)
    if "scaling" in parts:
        out["scaling"] = part_scaling(fashion)
    if parts == {"speed", "overhead", "flops", "scaling"}:
        args.out.write_text(render(out, args, time.perf_counter() - started))
        print(f"wrote {args.out}")


LOAD_NOTE = [
    "While these figures were taken, other jobs kept the load average of this 2-core machine between",
    "5 and 9, which made wall-clock times swing several fold; hence one torch thread and the process's",
    "CPU time (`--clock cpu`), which count the work done rather than the wait for a core. On a quiet",
    "machine, run it without those flags.",
]


def _flags(args: argparse.Namespace) -> str:
    flags = [
        f"--{k} {getattr(args, k)}"
        for k in ("threads", "clock", "reps", "n")
        if getattr(args, k) != {"threads": 2, "clock": "wall", "reps": 3, "n": 5000}[k]
    ]
    return "".join(" " + f for f in flags)


def render(out: dict[str, object], args: argparse.Namespace, seconds: float) -> str:
    speed, notes = out["speed"]  # type: ignore[misc]
    overhead = out["overhead"]
    flops, profile = out["flops"]  # type: ignore[misc]
    sizes, keys, verify_line = out["scaling"]  # type: ignore[misc]
    machine = (
        f"{platform.machine()}, torch threads: {args.threads}, torch {torch.__version__}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; {seconds / 60:.1f} minutes for the whole run; seconds below are "
        + ("wall-clock time" if args.clock == "wall" else "the process's CPU time (`--clock cpu`)")
    )
    return "\n".join(
        [
            "# Trainer benchmarks",
            "",
            f"Produced by `python benchmarks/trainer.py{_flags(args)}` ({machine}).",
            "The machine is shared, so each part times its variants interleaved in one run and reports",
            f"ratios (medians of {args.reps} repetitions).",
            *(LOAD_NOTE if args.clock == "cpu" else []),
            "",
            "## 1. backmark's trainer against a reference-style loop",
            "",
            f"One epoch of {args.n:,} images, batch {BATCH} + {TRIGGERS} triggers, the small CNN (`cnn`), "
            "SGD. The reference-style loop is a `DataLoader` (no worker processes: the same cores) over",
            "a Dataset that turns each image into a PIL image, pads, crops and flips it (with augmentation),",
            "converts and normalises it, one image at a time, as the paper's code does with torchvision's",
            "transforms (written with PIL and numpy: torchvision does not install beside this torch); the",
            "trigger batch is concatenated to every batch and loss and accuracy are read every step. It runs",
            "the model in the default layout as the reference code does, and, to separate the two effects,",
            "in channels-last as backmark does. The 3x32x32 data are synthetic (random pixels, "
            "CIFAR-10-shaped), as CIFAR-10 is not on this machine.",
            "",
            "| data | reference images/s | reference + channels-last images/s | backmark images/s | "
            "speed-up | speed-up over reference + channels-last |",
            "|---|---|---|---|---|---|",
            *speed,
            "",
            *(f"- {note}" for note in notes),
            "",
            "So on this CPU the model's own forward, backward and SGD step are most of the reference loop's",
            "time: no data pipeline can make it 3x faster (the issue's goal for augmented data). What",
            "backmark gains is channels-last (compare the third column) and the per-image work that its",
            "batched gather on the device replaces; section 3 shows how close the step is to the CPU's peak.",
            "",
            "## 2. Embedding overhead",
            "",
            "One epoch of Fashion-MNIST images with 2 triggers in every batch of 100 against the same epoch",
            "without a key (test accuracy on 1,000 images after it, and trigger accuracy when marked). A",
            "marked epoch trains on 2% more images and evaluates the 100 triggers; differences of a few",
            "percent either way are noise here (three runs in CPU time on one thread gave 1.016x, 0.935x",
            "and 0.994x).",
            "",
            "| training images | seconds clean | seconds marked | marked / clean |",
            "|---|---|---|---|",
            *overhead,  # type: ignore[misc]
            "",
            "## 3. CPU efficiency",
            "",
            "FLOPs of one training step (forward and backward, counted by `torch.utils.flop_counter`),",
            "against the FLOP/s of a 2048x2048 float32 matmul on the same threads; step time is the median",
            "of 20 steps, batches made on the fly as in training.",
            "",
            "| step | GFLOP | ms/step | GFLOP/s | matmul GFLOP/s | of matmul |",
            "|---|---|---|---|---|---|",
            *flops,
            "",
            "Where a step's time goes (cnn, 3x32x32; self CPU time of the top operators over 5 steps):",
            "",
            "| operator | share |",
            "|---|---|",
            *profile,
            "",
            "## 4. The demo and `reproduce`",
            "",
            "In [benchmarks-pipeline.md](benchmarks-pipeline.md) (`python benchmarks/pipeline.py`): wall",
            "time, CPU time and peak memory of the demo and of reproduce, reproduce's time by stage, and a",
            "check that `reproduce --workers 2` finds the numbers of a serial run.",
            "",
            "## 5. Scaling",
            "",
            "One epoch of Fashion-MNIST with a 100-trigger key (2 per batch), then one epoch of 10,000",
            "images with keys of 100, 1,000 and 10,000 triggers (making the key is timed apart: it derives",
            "every image and label from the seed and commits to each).",
            "",
            "| training images | triggers | seconds per epoch | microseconds per image |",
            "|---|---|---|---|",
            *sizes,
            "",
            "| training images | triggers | seconds per epoch | seconds to make the key |",
            "|---|---|---|---|",
            *keys,
            "",
            verify_line,
            "",
            "## GPU",
            "",
            "`bash benchmarks/gpu.sh` (benchmarks/gpu.py) marks a CIFAR-10-shaped pre-activation ResNet-18",
            "on one GPU with bf16 and torch.compile on and off and reports images per second, time to 100%",
            "trigger accuracy and peak memory. No GPU was lent to the task that wrote it, so it has not run",
            "on one yet; `python benchmarks/gpu.py --smoke --device cpu` ran its code paths on this CPU.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
