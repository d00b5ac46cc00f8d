"""Dataset spec strings, as typed on the command line, and the loader they dispatch to.

A spec is ``NAME`` or ``NAME:DIR``; ``imagefolder`` also takes ``@HxW`` after DIR. The name is
case-insensitive; DIR may start with ``~``.
"""

from __future__ import annotations

import re
from pathlib import Path

from backmark.data.cifar import CIFAR10, CIFAR100, load_cifar
from backmark.data.dataset import ImageDataset
from backmark.data.imagefolder import load_imagefolder, parse_size
from backmark.data.mnist import IDX_SOURCES, load_idx_dataset
from backmark.errors import BackmarkError

_SPECS = (
    "fashion-mnist",
    "fashion-mnist:DIR",
    "mnist",
    "mnist:DIR",
    "cifar10:DIR",
    "cifar100:DIR",
    "imagefolder:DIR",
    "imagefolder:DIR@HxW",
)
_SIZE_SUFFIX = re.compile(r"^(?P<dir>.+)@(?P<size>\d+[xX]\d+)$")


def dataset_specs() -> list[str]:
    """The accepted spec forms, for help texts and error messages."""
    return list(_SPECS)


def _accepted() -> str:
    return "accepted: " + ", ".join(_SPECS)


def load_dataset(spec: str, *, download: bool = True, progress: bool = False) -> ImageDataset:
    """Load the dataset that ``spec`` names (see :func:`dataset_specs`) into memory.

    ``download`` lets Fashion-MNIST (and MNIST, if checksums are configured) be fetched into the
    user cache when no local copy is found; ``progress`` prints download progress to stderr.
    Returns uint8 images [N, C, H, W] and int64 labels; every problem with the spec or the files
    raises :class:`BackmarkError` with a one-line message.
    """
    name, sep, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if sep and not rest.strip():
        raise BackmarkError(f"dataset spec {spec!r} has an empty DIR after ':'; {_accepted()}")
    directory = Path(rest.strip()).expanduser() if sep else None

    if name in IDX_SOURCES:
        return load_idx_dataset(name, directory, download_ok=download, progress=progress)
    if name in ("cifar10", "cifar100"):
        if directory is None:
            raise BackmarkError(
                f"{name} needs a directory: {name}:DIR, with DIR the extracted python-version "
                f"archive from https://www.cs.toronto.edu/~kriz/cifar.html or its parent"
            )
        return load_cifar(directory, CIFAR10 if name == "cifar10" else CIFAR100)
    if name == "imagefolder":
        if directory is None:
            raise BackmarkError("imagefolder needs a directory: imagefolder:DIR[@HxW]")
        size = None
        match = _SIZE_SUFFIX.match(rest.strip())
        if match and not directory.is_dir():
            directory = Path(match["dir"]).expanduser()
            size = parse_size(match["size"])
        return load_imagefolder(directory, size)
    raise BackmarkError(f"unknown dataset spec {spec!r}; {_accepted()}")
