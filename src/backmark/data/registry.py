"""The dataset registry: datasets by name, and the ``NAME[:DIR]`` spec strings of the command line.

Each reader registers itself with :func:`register_dataset`, naming the spec forms it accepts;
:func:`get_dataset` finds one and :func:`list_datasets` lists them (the shape of every plugin table,
:mod:`backmark.infra.plugins`); :func:`load_dataset` parses a spec, checks what every reader needs (a
DIR, when the bare name is not a form) and calls the reader. The name is case-insensitive; DIR may
start with ``~``. Unknown names are one-line errors that list every accepted form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backmark.data.dataset import ImageDataset
from backmark.errors import BackmarkError
from backmark.infra.plugins import Registry


class DatasetReader(Protocol):
    """``reader(directory, *, download, progress)``: ``directory`` is DIR of ``NAME:DIR``, or None."""

    def __call__(self, directory: Path | None, *, download: bool, progress: bool) -> ImageDataset: ...


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    reader: DatasetReader
    forms: tuple[str, ...]  # the accepted spec strings, e.g. ("mnist", "mnist:DIR")
    description: str
    needs_dir: str  # why a DIR is required and where to get the files; "" when the bare name is a form


_DATASETS: Registry[DatasetSpec] = Registry("dataset", forms=lambda spec: spec.forms)


def register_dataset(
    name: str, *, forms: tuple[str, ...], description: str, needs_dir: str = ""
) -> Callable[[DatasetReader], DatasetReader]:
    """Decorator that registers a :class:`DatasetReader` under ``name`` (lower case).

    ``forms`` are what help texts and errors show; each starts with ``name``. ``needs_dir`` says, for a
    dataset that cannot be found without a directory, what DIR must hold.
    """
    if name != name.lower():
        raise ValueError(f"dataset {name!r} is not lower case")
    if not forms or not all(f == name or f.startswith(name + ":") for f in forms):
        raise ValueError(f"every spec form of dataset {name!r} must be {name} or {name}:...")
    if (name in forms) == bool(needs_dir):
        raise ValueError(f"dataset {name!r}: give needs_dir exactly when the bare name is not a form")

    def spec(reader: DatasetReader) -> DatasetSpec:
        return DatasetSpec(name, reader, forms, description, needs_dir)

    return _DATASETS.register(name, spec)


def get_dataset(name: str) -> DatasetSpec:
    """The dataset registered as ``name`` (lower case, without ``:DIR``; its reader and forms, not its
    images: see :func:`load_dataset`); an unknown one is a one-line BackmarkError listing every form."""
    return _DATASETS.get(name)


def list_datasets() -> list[DatasetSpec]:
    """Every registered dataset, by name."""
    return _DATASETS.entries()


def dataset_specs() -> list[str]:
    """The accepted spec forms, for help texts and error messages."""
    return _DATASETS.forms()


def _accepted() -> str:
    return "accepted: " + ", ".join(dataset_specs())


def load_dataset(spec: str, *, download: bool = True, progress: bool = False) -> ImageDataset:
    """Load the dataset that ``spec`` names (see :func:`dataset_specs`) into memory.

    ``download`` lets Fashion-MNIST (and MNIST, if checksums are configured) be fetched into the
    user cache when no local copy is found; ``progress`` prints download progress to stderr.
    Returns uint8 images [N, C, H, W] and int64 labels; every problem with the spec or the files
    raises :class:`BackmarkError` with a one-line message.
    """
    name, sep, rest = spec.strip().partition(":")
    name = name.strip().lower()
    found = get_dataset(name)
    if sep and not rest.strip():
        raise BackmarkError(f"dataset spec {spec!r} has an empty DIR after ':'; {_accepted()}")
    directory = Path(rest.strip()).expanduser() if sep else None
    if directory is None and found.needs_dir:
        raise BackmarkError(f"{name} needs a directory: {' or '.join(found.forms)}, {found.needs_dir}")
    return found.reader(directory, download=download, progress=progress)
