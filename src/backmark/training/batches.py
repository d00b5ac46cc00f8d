"""The one batching implementation: shuffled batches of examples held on the training device.

Images stay uint8 on the device and become float [0, 1] one batch at a time, in the training memory
layout, in one conversion. Augmentation (a random crop of the zero-padded image and a horizontal flip)
is index arithmetic: every pixel of the batch is gathered from the uint8 data in one ``torch.take``, so
there is no per-sample Python work and no padded copy. Triggers, when given, are gathered into the same
preallocated batch after the training images, so mixing them copies no batch.

The random draws (the order, the crops and flips, the triggers) come from CPU generators and are made
for the whole global batch, of which each ``torchrun`` rank then takes its slice: the schedule is the
same on any device and for any number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal, NamedTuple

import torch

from backmark.training.distributed import World, shard

Augment = Literal["none", "crop", "flip-crop"]


class Batch(NamedTuple):
    """This process's share of a batch: ``x`` (B, ...) and ``y``; ``total`` rows over all ranks.

    ``y`` is int64 (B,) class labels, or float32 (B, K) target probabilities when the batches were made
    from soft targets (distillation).
    """

    x: torch.Tensor
    y: torch.Tensor
    total: int


class TriggerStream:
    """An endless stream of trigger indices: every trigger once per pass, in a fresh random order."""

    def __init__(self, n: int, *, generator: torch.Generator) -> None:
        self.n = n
        self.generator = generator
        self._order = torch.randperm(n, generator=generator)
        self._pos = 0

    def take(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self._pos == self.n:
                self._order = torch.randperm(self.n, generator=self.generator)
                self._pos = 0
            step = min(k, self.n - self._pos)
            out.append(self._order[self._pos : self._pos + step])
            self._pos += step
            k -= step
        return torch.cat(out)


class Triggers:
    """Trigger images (uint8 (n, C, H, W)) and labels on the device, ``per_batch`` of them per batch.

    Each trigger is shown once per pass over the set, in a fresh random order each pass (seeded).
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, *, per_batch: int, seed: int, device: torch.device
    ) -> None:
        self.images = images.to(device)
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.per_batch = per_batch
        gen = torch.Generator()
        gen.manual_seed(seed)
        self.stream = TriggerStream(len(images), generator=gen)

    def take(self) -> torch.Tensor:
        return self.stream.take(self.per_batch)


def crop_padding(width: int) -> int:
    """Pixels of zero padding of the random crop: 4 from 32 pixels wide (CIFAR), else 2."""
    return 4 if width >= 32 else 2


class DeviceBatches:
    """Shuffled batches of ``images`` (uint8 (N, C, H, W) or float (N, ...)) and their ``labels``.

    ``labels`` are class labels (N,) (kept as int64) or target probabilities float (N, K) (kept as
    float32; triggers, which have class labels, cannot be mixed into those).

    Args:
        batch_size: training examples per global batch (triggers come on top).
        generator: draws the order (a fresh permutation every pass) and the augmentation.
        augment: ``crop`` shifts each image by up to 4 pixels (2 below 32 pixels wide), zero-filled;
            ``flip-crop`` also flips about half of them horizontally.
        device: where the data lives and batches are made (default: where ``images`` are).
        memory_format: the layout of the float image batches (the model's training layout).
        triggers: mixed into every batch after the training examples (settable between passes).
        world: this process's rank among ``torchrun``'s processes; it gets its slice of every batch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        generator: torch.Generator,
        augment: Augment = "none",
        device: torch.device | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
        triggers: Triggers | None = None,
        world: World | None = None,
    ) -> None:
        device = device or images.device
        soft = labels.is_floating_point()
        if soft and (labels.dim() != 2 or triggers is not None):
            raise ValueError("soft targets must be float (N, K), and take no triggers")
        self.images = images.to(device)
        self.labels = labels.to(device=device, dtype=torch.float32 if soft else torch.int64)
        self.batch_size, self.generator, self.augment = batch_size, generator, augment
        self.device, self.memory_format = device, memory_format
        self.triggers = triggers
        self.world = world or World()

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = torch.randperm(len(self.images), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            shifts = self._draw_augmentation(len(idx))
            tidx = self.triggers.take() if self.triggers is not None else order[:0]
            mine, theirs = shard(len(idx), self.world), shard(len(tidx), self.world)
            shifts = None if shifts is None else tuple(s[mine] for s in shifts)
            yield self._gather(idx[mine], shifts, tidx[theirs], total=len(idx) + len(tidx))

    def _draw_augmentation(self, b: int) -> tuple[torch.Tensor, ...] | None:
        if self.augment == "none":
            return None
        pad = crop_padding(self.images.shape[-1])
        dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=self.generator)
        dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=self.generator)
        if self.augment == "flip-crop":
            flip = torch.rand(b, generator=self.generator) < 0.5
        else:
            flip = torch.zeros(b, dtype=torch.bool)
        return dy, dx, flip

    def _gather(
        self, idx: torch.Tensor, shifts: tuple[torch.Tensor, ...] | None, tidx: torch.Tensor, total: int
    ) -> Batch:
        b, k = len(idx), len(tidx)
        idx = idx.to(self.device, non_blocking=True)
        buf = torch.empty((b + k, *self.images.shape[1:]), dtype=self.images.dtype, device=self.device)
        y = torch.empty((b + k, *self.labels.shape[1:]), dtype=self.labels.dtype, device=self.device)
        if shifts is None:
            torch.index_select(self.images, 0, idx, out=buf[:b])
        else:
            flat, valid = self._crop_index(idx, *(s.to(self.device, non_blocking=True) for s in shifts))
            torch.take(self.images, flat, out=buf[:b])
            buf[:b].mul_(valid)
        torch.index_select(self.labels, 0, idx, out=y[:b])
        if k:
            assert self.triggers is not None
            tidx = tidx.to(self.device, non_blocking=True)
            torch.index_select(self.triggers.images, 0, tidx, out=buf[b:])
            torch.index_select(self.triggers.labels, 0, tidx, out=y[b:])
        return Batch(self._float(buf), y, total)

    def _float(self, buf: torch.Tensor) -> torch.Tensor:
        if buf.dtype != torch.uint8:
            return buf
        fmt = self.memory_format if buf.dim() == 4 else torch.contiguous_format
        return buf.to(dtype=torch.float32, memory_format=fmt).div_(255.0)

    def _crop_index(
        self, idx: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices into the images of each output pixel of the crops, and which of them are inside.

        Output pixel (i, j) of image b is input pixel (i + dy - pad, j' + dx - pad), with j' = W - 1 - j
        when b is flipped, else j: the crop of the zero-padded image, then the flip.
        """
        _, c, h, w = self.images.shape
        pad = crop_padding(w)
        dev = self.device
        rows = torch.arange(h, device=dev) + dy - pad  # (b, h)
        cols = torch.arange(w, device=dev).expand(len(idx), w)
        cols = torch.where(flip.unsqueeze(1), w - 1 - cols, cols) + dx - pad  # (b, w)
        valid = ((rows >= 0) & (rows < h)).unsqueeze(2) & ((cols >= 0) & (cols < w)).unsqueeze(1)
        pixel = rows.clamp(0, h - 1).unsqueeze(2) * w + cols.clamp(0, w - 1).unsqueeze(1)  # (b, h, w)
        channel = torch.arange(c, device=dev).view(1, c, 1, 1) * (h * w)
        flat = idx.view(-1, 1, 1, 1) * (c * h * w) + channel + pixel.unsqueeze(1)
        return flat, valid.unsqueeze(1)
