"""Independent attacks in parallel worker processes, with the results of a serial run, bit for bit.

Each worker is pinned to its share of the cores (``sched_setaffinity``) but keeps the parent's number of
torch threads: oneDNN splits its reductions by thread count, so a worker with fewer threads would compute
slightly different weights than a serial run (measured: an FTAL run's weights differ between 1 and 2
threads, and do not between 2 threads on one core and 2 on two). Threads that share a core yield instead
of spinning (``OMP_WAIT_POLICY=PASSIVE``). Every attack seeds its own random streams, so the order in
which the workers take them does not matter; outcomes come back in the attacks' order. The processes are
spawned (not forked), so no thread pool of the parent is inherited half-initialised.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import torch

from backmark.attacks import Attack
from backmark.study.measure import AttackOutcome, Baseline, Trial, run_attack
from backmark.training import model_device

# What each worker keeps between tasks: set once by _start, read by _attack.
_STATE: dict[str, Any] = {}


def core_shares(workers: int) -> list[list[int]]:
    """The cores this process may run on, dealt out to ``workers`` (each gets at least one)."""
    if hasattr(os, "sched_getaffinity"):
        cores = sorted(os.sched_getaffinity(0))
    else:
        cores = list(range(os.cpu_count() or 1))
    return [cores[i::workers] or [cores[i % len(cores)]] for i in range(workers)]


def _start(shares: Any, threads: int, state: dict[str, Any]) -> None:
    """Worker initialiser: take a share of the cores, the parent's thread count, and the shared inputs."""
    cores = shares.get()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(threads)
    trial: Trial = state.pop("trial")
    state["trial"] = replace(trial, model=trial.model.to(state.pop("device")))
    _STATE.update(state)


def _attack(index: int) -> AttackOutcome:
    s = _STATE
    outcome = run_attack(s["trial"], s["attacks"][index], baseline=s["baseline"])
    # a mappingproxy does not pickle: a dict travels, and becomes read-only again in the parent
    return replace(outcome, params=dict(outcome.params))


def run_in_workers(
    trial: Trial,
    attacks: Sequence[Attack],
    *,
    baseline: Baseline,
    workers: int,
) -> Iterator[AttackOutcome]:
    """Yield :func:`~backmark.study.measure.run_attack`'s outcome of every attack on ``trial``, in order."""
    ctx = multiprocessing.get_context("spawn")
    shares = ctx.Queue()
    for share in core_shares(workers):
        shares.put(share)
    state = {
        # the model is sent once per worker, on the CPU; moved back to its device there
        "trial": replace(trial, model=copy.deepcopy(trial.model).cpu()),
        "device": str(model_device(trial.model)),
        "attacks": list(attacks), "baseline": baseline,
    }  # fmt: skip
    with _passive_omp(), ctx.Pool(workers, _start, (shares, torch.get_num_threads(), state)) as pool:
        for outcome in pool.imap(_attack, range(len(attacks))):
            yield replace(outcome, params=MappingProxyType(dict(outcome.params)))


@contextlib.contextmanager
def _passive_omp() -> Iterator[None]:
    """Workers spawned inside start with ``OMP_WAIT_POLICY=PASSIVE`` (unless the user chose a policy)."""
    before = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


__all__ = ["core_shares", "run_in_workers"]
