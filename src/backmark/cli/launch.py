"""The verbs that train, on one process or as one of ``torchrun``'s: join the group, quiet the others.

``torchrun --nproc-per-node N -m backmark embed ...`` starts N copies of the command; :func:`processes`
joins them into a process group (gloo on the CPU, nccl on CUDA), lets rank 0 alone print and write, and
leaves the group at the end. Without torchrun it does nothing but resolve ``--device``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from backmark.training import resolve_device, world
from backmark.training.distributed import init_from_env, shutdown


@contextmanager
def processes(args: argparse.Namespace) -> Iterator[bool]:
    """Yield True in the process that prints and writes files (the only one without torchrun)."""
    joined = init_from_env(resolve_device(args.device))
    if not world().main:
        args.quiet = True  # progress and results come from rank 0
        if getattr(args, "json", False):
            args.json = False
    try:
        yield world().main
    finally:
        if joined:
            shutdown()
