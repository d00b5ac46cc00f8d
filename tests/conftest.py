"""Shared fixtures: the real Fashion-MNIST data, loaded once, small seeded subsets of it, and a crasher."""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from backmark.atomic import CRASH_ENV, NO_EXCHANGE_ENV, STEP_LOG_ENV
from backmark.data import ImageDataset, load_dataset
from backmark.errors import BackmarkError


@pytest.fixture(scope="session")
def fashion() -> ImageDataset:
    try:
        return load_dataset("fashion-mnist", download=False)
    except BackmarkError as exc:
        pytest.skip(f"Fashion-MNIST not installed ({exc}); apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="session")
def fashion_small(fashion: ImageDataset) -> ImageDataset:
    return fashion.subset(train=4000, test=1000, seed=0)


class Crasher:
    """Run a function in a forked child that kills itself (SIGKILL) after one write step.

    The steps are those of :mod:`backmark.atomic` (its crash-test hook). A fork, not a new interpreter,
    so each kill costs milliseconds and the child runs exactly the code (and monkeypatches) of the test.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def _run(self, fn: Callable[[], object], env: dict[str, str], timeout: float = 60.0) -> int:
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 0
            try:
                os.environ.update(env)
                fn()
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the child writer did not finish in {timeout} s")
            time.sleep(0.002)

    def steps(self, fn: Callable[[], object], *, exchange: bool = True) -> list[str]:
        """Every step ``fn`` passes, as ``name#k`` (the k-th step of that name), in order."""
        log = self.tmp / f"steps-{time.monotonic_ns()}.log"
        status = self._run(fn, {STEP_LOG_ENV: str(log), **({} if exchange else {NO_EXCHANGE_ENV: "1"})})
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the writer failed"
        found = log.read_text().split()
        log.unlink()
        return found

    def kill_after(self, fn: Callable[[], object], step: str, *, exchange: bool = True) -> None:
        """Run ``fn`` until just after ``step``; assert that it was killed there."""
        status = self._run(fn, {CRASH_ENV: step, **({} if exchange else {NO_EXCHANGE_ENV: "1"})})
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (step, status)


@pytest.fixture
def crasher(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Crasher:
    """A :class:`Crasher`. fsync is skipped meanwhile: what a killed process wrote is in the kernel's
    cache and survives it, so only the order of the steps matters here, and the tests run 10x faster."""
    if not hasattr(os, "fork"):
        pytest.skip("the crash tests fork")
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    return Crasher(tmp_path_factory.mktemp("crash-logs"))
