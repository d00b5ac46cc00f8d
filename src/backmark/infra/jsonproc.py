"""Parse large JSON bodies in worker processes, so the server's event loop keeps answering meanwhile.

CPython's JSON parser holds the GIL for a whole document: a 15 MB body of pixels takes most of a second
to parse, and a thread would stall every other request (health checks included) for that long. Bodies
over ``inline_below`` bytes are parsed in a small pool of worker processes (started on first use, with
``spawn``, so they share no locks with the server's threads) and the big arrays inside come back as
numpy arrays, which cost one copy, not one Python object per number.

:meth:`JsonPool.parse` returns ``(doc, arrays)``: the document with each value at one of ``array_at``'s
paths replaced by a placeholder, and those values as numpy arrays (or a string saying why they are not
numbers). Bad JSON is a :class:`~backmark.infra.schema.SchemaError` either way.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from backmark.infra.schema import SchemaError, parse_json

Path = tuple[str | int, ...]
PLACEHOLDER = "<array>"


def extract(doc: Any, array_at: Sequence[Path]) -> tuple[Any, list[np.ndarray | str | None]]:
    """Replace the value at each path (if there) by :data:`PLACEHOLDER`; return it as a numpy array."""
    arrays: list[np.ndarray | str | None] = []
    for path in array_at:
        node, found = doc, True
        for key in path[:-1]:
            in_list = isinstance(key, int) and isinstance(node, list) and 0 <= key < len(node)
            if not (in_list or (isinstance(key, str) and isinstance(node, dict) and key in node)):
                found = False
                break
            node = node[key]
        last = path[-1]
        if not (found and isinstance(last, str) and isinstance(node, dict) and last in node):
            arrays.append(None)
            continue
        try:
            arrays.append(np.asarray(node[last]))
        except (ValueError, TypeError, OverflowError, RecursionError):
            arrays.append("not a regular array of numbers")
        node[last] = PLACEHOLDER
    return doc, arrays


def _work(body: bytes, array_at: Sequence[Path]) -> tuple[str | None, Any, list[np.ndarray | str | None]]:
    try:
        doc = parse_json(body, what="request body")
    except SchemaError as exc:
        return str(exc), None, []
    doc, arrays = extract(doc, array_at)
    return None, doc, arrays


def _orphan_watch(parent: int) -> None:
    """In a worker: end this process when the server that started it is gone (even if killed)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="backmark-orphan-watch").start()


class JsonPool:
    """``await pool.parse(body, array_at)``: parsed in this process if small, else in a worker process."""

    def __init__(self, *, workers: int = 2, inline_below: int = 256 * 2**10) -> None:
        self.workers = workers
        self.inline_below = inline_below
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=context,
                    initializer=_orphan_watch,
                    initargs=(os.getpid(),),
                )
            return self._pool

    async def parse(self, body: bytes, array_at: Sequence[Path]) -> tuple[Any, list[np.ndarray | str | None]]:
        if len(body) < self.inline_below:
            error, doc, arrays = _work(body, array_at)
        else:
            loop = asyncio.get_running_loop()
            error, doc, arrays = await loop.run_in_executor(self._executor(), _work, body, tuple(array_at))
        if error is not None:
            raise SchemaError(error)
        return doc, arrays

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
