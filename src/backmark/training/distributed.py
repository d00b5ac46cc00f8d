"""Data-parallel training under ``torchrun``: which rank this is, its share of a batch, and agreement.

``torchrun --nproc-per-node N -m backmark embed ...`` starts N processes with ``RANK``, ``WORLD_SIZE``
and the rendezvous in their environment; :func:`init_from_env` joins them into a process group (gloo on
the CPU, nccl on CUDA). Every rank draws the same global batch from the same seeded generators and
trains on its own slice of it (:func:`shard`), so the run follows the same schedule whatever N is, and
DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank ``rank`` of ``size``."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """True for the process that writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def world() -> World:
    """The current process group's rank and size, or rank 0 of 1 when there is none."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched() -> bool:
    """True in a process started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> bool:
    """Join the process group that ``torchrun`` set up, if it did and none is joined yet: nccl for CUDA,
    gloo otherwise. True if this call joined it (and :func:`shutdown` should leave it)."""
    if not (launched() and dist.is_available()) or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def shutdown() -> None:
    """Leave the process group. Garbage is collected first, so that what a finished
    DistributedDataParallel left in reference cycles (its reducer and the gloo work it holds) is freed
    while the group and the interpreter are still up, not during the interpreter's teardown, where
    freeing such work can abort the process (seen once here as a rank's SIGABRT at exit, "terminate
    called without an active exception"; pytorch/pytorch#179291 describes the mechanism)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def shard(n: int, w: World) -> slice:
    """This rank's rows of a global batch of ``n``: consecutive, the first ``n % size`` ranks one more."""
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return slice(start, start + base + (w.rank < extra))


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """``values`` summed over every rank (returned as they are without a process group)."""
    if not world().parallel:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


@torch.no_grad()
def sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics, which each rank updates on its slice)."""
    if world().parallel:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


@torch.no_grad()
def check_agree(model: nn.Module) -> None:
    """Raise RuntimeError unless every rank holds the same parameters and buffers, bit for bit."""
    w = world()
    if not w.parallel:
        return
    tensors = [t.detach() for t in (*model.parameters(), *model.buffers())]
    # a float64 sum of each tensor's bytes read as int32 is cheap and changes with any flipped bit in practice
    local = torch.stack(
        [t.contiguous().view(-1).view(torch.uint8)[: t.numel() * t.element_size() // 4 * 4]
         .view(torch.int32).double().sum() for t in tensors]
    )  # fmt: skip
    gathered = [torch.empty_like(local) for _ in range(w.size)]
    dist.all_gather(gathered, local)
    if any(not torch.equal(gathered[0], g) for g in gathered[1:]):
        raise RuntimeError("the training processes ended with different weights; please report this")
