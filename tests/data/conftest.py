"""Shared fixtures for backmark.data tests: small datasets written in the real on-disk formats."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from backmark.data.idx import IDX_FILES


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write ``array`` (uint8, 1 or 3 dims) as an IDX file; ``.gz`` is appended when ``gz``."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_idx_arrays(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 28x28 images and labels 0..9, keyed by IDX file name."""
    rng = np.random.default_rng(seed)
    return {
        IDX_FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        IDX_FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_FILES[3]: (np.arange(n_test) % 10).astype(np.uint8),
    }


def make_idx_dir(directory: Path, *, gz: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a small complete IDX dataset into ``directory``; return the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = make_idx_arrays(seed=seed)
    for name, array in arrays.items():
        write_idx(directory / name, array, gz=gz)
    return arrays


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point $BACKMARK_DATA and $XDG_CACHE_HOME at empty temp dirs and disable proxies.

    Returns {"data": ..., "cache": ...} (the cache dir is the XDG root, i.e. without /backmark).
    """
    data = tmp_path / "data-root"
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("BACKMARK_DATA", str(data))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return {"data": data, "cache": cache}


@pytest.fixture
def idx_writer() -> Callable[..., Path]:
    """:func:`write_idx`: ``idx_writer(path, array, gz=False) -> written path``."""
    return write_idx


@pytest.fixture
def idx_dir_maker() -> Callable[..., dict[str, np.ndarray]]:
    """:func:`make_idx_dir`: ``idx_dir_maker(directory, gz=False, seed=0) -> arrays``."""
    return make_idx_dir
