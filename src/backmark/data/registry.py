"""The dataset registry: datasets by name, and the ``NAME[:DIR]`` spec strings of the command line.

Each reader registers itself with :func:`register_dataset`, naming the spec forms it accepts;
:func:`load_dataset` parses a spec, checks what every reader needs (a DIR, when the bare name is not a
form) and calls the reader. The name is case-insensitive; DIR may start with ``~``. Unknown names are
one-line errors that list every accepted form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backmark.data.dataset import ImageDataset
from backmark.errors import BackmarkError


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


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str, *, forms: tuple[str, ...], description: str, needs_dir: str = ""
) -> Callable[[DatasetReader], DatasetReader]:
    """Decorator that registers a :class:`DatasetReader` under ``name`` (lower case).

    ``forms`` are what help texts and errors show; each starts with ``name``. ``needs_dir`` says, for a
    dataset that cannot be found without a directory, what DIR must hold.
    """

    def wrap(reader: DatasetReader) -> DatasetReader:
        if name in _REGISTRY or name != name.lower() or ":" in name:
            raise ValueError(f"dataset {name!r} is registered twice, not lower case, or has a ':'")
        if not forms or not all(f == name or f.startswith(name + ":") for f in forms):
            raise ValueError(f"every spec form of dataset {name!r} must be {name} or {name}:...")
        if (name in forms) == bool(needs_dir):
            raise ValueError(f"dataset {name!r}: give needs_dir exactly when the bare name is not a form")
        _REGISTRY[name] = DatasetSpec(name, reader, forms, description, needs_dir)
        return reader

    return wrap


def list_datasets() -> list[DatasetSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def dataset_specs() -> list[str]:
    """The accepted spec forms, for help texts and error messages."""
    return [form for spec in list_datasets() for form in spec.forms]


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
    found = _REGISTRY.get(name)
    if found is None:
        raise BackmarkError(f"unknown dataset spec {spec!r}; {_accepted()}")
    if sep and not rest.strip():
        raise BackmarkError(f"dataset spec {spec!r} has an empty DIR after ':'; {_accepted()}")
    directory = Path(rest.strip()).expanduser() if sep else None
    if directory is None and found.needs_dir:
        raise BackmarkError(f"{name} needs a directory: {' or '.join(found.forms)}, {found.needs_dir}")
    return found.reader(directory, download=download, progress=progress)
