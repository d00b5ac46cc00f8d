"""CIFAR-10 and CIFAR-100 from their "python version" pickle batches, read without trusting them.

The batches are pickles, and unpickling can run arbitrary code. :class:`SafeUnpickler` therefore
resolves only the few globals that the real files need (plain containers and numpy array
reconstruction) and refuses everything else, so a tampered file is an error, not an exploit.

Layout: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``cifar-100-python/{train, test, meta}``. Each batch is a dict with ``data`` (uint8 [N, 3072],
1024 red then 1024 green then 1024 blue values, rows of 32) and the labels.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from backmark.data.dataset import ImageDataset
from backmark.data.registry import register_dataset
from backmark.errors import BackmarkError

_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _numpy_global(suffix: str, name: str) -> Any:
    """Resolve ``numpy._core.<suffix>.<name>`` (numpy 2) or ``numpy.core.<suffix>.<name>`` (1.x)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{suffix}"), name)
        except (ImportError, AttributeError):
            continue
    raise BackmarkError(f"this numpy has no {suffix}.{name}; install numpy>=1.24")


# (module, name) pairs a CIFAR pickle may reference. Python 2 pickles say ``__builtin__``; pickles
# written by Python 3 with protocol 2 encode bytes via ``_codecs.encode``; numpy 2 with protocol 5
# rebuilds arrays via ``_frombuffer``. All of these only build data; none can run code.
_BUILTINS: dict[str, type] = {"dict": dict, "list": list, "str": str, "bytes": bytes, "int": int}
_ALLOWED = frozenset(
    [(mod, name) for mod in ("builtins", "__builtin__") for name in _BUILTINS]
    + [("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype")]
    + [(f"{pkg}.multiarray", "_reconstruct") for pkg in ("numpy.core", "numpy._core")]
    + [(f"{pkg}.numeric", "_frombuffer") for pkg in ("numpy.core", "numpy._core")]
)


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED`` and refuses all others.

    ``encoding="bytes"`` keeps Python 2 ``str`` objects (keys and names in the original files) as
    bytes, and is what numpy needs to rebuild arrays pickled by Python 2.
    """

    def __init__(self, file: BinaryIO, source: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            wanted = f"{module}.{name}"
            raise BackmarkError(
                f"{self.source} wants to load {wanted!a}, which a CIFAR file never needs; "
                f"refusing it, the file may be malicious, get a fresh copy from {_URL}"
            )
        if module in ("builtins", "__builtin__"):
            return _BUILTINS[name]
        if module == "_codecs":
            return _codecs_encode
        if module == "numpy":
            return np.ndarray if name == "ndarray" else np.dtype
        return _numpy_global(module.rsplit(".", 1)[1], name)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` (how Python 3 pickles bytes under protocol 2)."""
    return text.encode(encoding)


def read_pickle(path: Path) -> dict[Any, Any]:
    """Unpickle ``path`` with :class:`SafeUnpickler`; it must hold a dict."""
    try:
        with path.open("rb") as f:
            obj = SafeUnpickler(f, path).load()
    except BackmarkError:
        raise
    except FileNotFoundError as exc:
        raise BackmarkError(f"{path} is missing; extract the full archive from {_URL}") from exc
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise BackmarkError(
            f"cannot unpickle {path}: {type(exc).__name__}: {exc}; replace it with a fresh copy from {_URL}"
        ) from exc
    if not isinstance(obj, dict):
        raise BackmarkError(f"{path} holds a {type(obj).__name__}, not a dict; replace it")
    return obj


def _field(batch: dict[Any, Any], key: str, path: Path) -> Any:
    """``batch[key]`` under a bytes key (original files) or str key; error naming the file."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise BackmarkError(f"{path} has no {key!r} entry; it is not a CIFAR file, replace it")


@dataclass(frozen=True)
class _Layout:
    """File names and keys of one CIFAR variant."""

    name: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str


CIFAR10 = _Layout(
    "cifar10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    "labels",
    "label_names",
)
CIFAR100 = _Layout(
    "cifar100", "cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names"
)


def _resolve(directory: Path, layout: _Layout) -> Path:
    """The folder holding the batches: ``directory`` itself or ``directory/<layout.folder>``."""
    for candidate in (directory / layout.folder, directory):
        if (candidate / layout.meta).is_file():
            return candidate
    raise BackmarkError(
        f"{layout.name}: no {layout.meta} in {directory} or {directory / layout.folder}; "
        f"download the python version from {_URL} and pass the extracted {layout.folder} folder "
        f"or its parent"
    )


def _load_batch(path: Path, layout: _Layout, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file -> images uint8 [N, 3, 32, 32] and labels int64 [N]."""
    batch = read_pickle(path)
    data = _field(batch, "data", path)
    labels_raw = _field(batch, layout.label_key, path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise BackmarkError(f"{path}: 'data' is not a uint8 [N, 3072] array; replace the file")
    if data.shape[1] != 3 * 32 * 32:
        raise BackmarkError(f"{path}: 'data' rows have {data.shape[1]} values, not 3072; replace it")
    try:
        labels = np.asarray(labels_raw, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BackmarkError(f"{path}: labels are not integers; replace the file") from exc
    if labels.shape != (data.shape[0],):
        raise BackmarkError(f"{path} has {labels.size} labels for {data.shape[0]} images; replace the file")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise BackmarkError(f"{path} has labels outside 0..{num_classes - 1}; replace the file")
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return x, torch.from_numpy(labels)


def load_cifar(directory: Path, layout: _Layout) -> ImageDataset:
    """Load CIFAR-10 (``CIFAR10``) or CIFAR-100 fine labels (``CIFAR100``) from ``directory``."""
    if not directory.is_dir():
        raise BackmarkError(
            f"{layout.name} directory {directory} does not exist; download the python version "
            f"from {_URL}, extract it and pass {layout.name}:DIR"
        )
    root = _resolve(directory, layout)
    meta_path = root / layout.meta
    names = _field(read_pickle(meta_path), layout.names_key, meta_path)
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise BackmarkError(f"{meta_path}: {layout.names_key!r} is not a list of names; replace it")
    classes = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)
    parts = [_load_batch(root / f, layout, len(classes)) for f in layout.train]
    test_x, test_y = _load_batch(root / layout.test, layout, len(classes))
    train_x = torch.cat([p[0] for p in parts])
    train_y = torch.cat([p[1] for p in parts])
    return ImageDataset(layout.name, train_x, train_y, test_x, test_y, classes)


_NEEDS_DIR = f"with DIR the extracted python-version archive from {_URL} or its parent"


@register_dataset(
    "cifar10", forms=("cifar10:DIR",), description="CIFAR-10, 32x32 RGB, 10 classes", needs_dir=_NEEDS_DIR
)
def _cifar10(directory: Path | None, *, download: bool, progress: bool) -> ImageDataset:
    assert directory is not None  # the registry asks for DIR (needs_dir)
    return load_cifar(directory, CIFAR10)


@register_dataset(
    "cifar100",
    forms=("cifar100:DIR",),
    description="CIFAR-100 with its fine labels, 32x32 RGB, 100 classes",
    needs_dir=_NEEDS_DIR,
)
def _cifar100(directory: Path | None, *, download: bool, progress: bool) -> ImageDataset:
    assert directory is not None  # the registry asks for DIR (needs_dir)
    return load_cifar(directory, CIFAR100)
