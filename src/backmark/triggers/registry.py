"""The trigger-kind registry: how a key's images are made, by name (``abstract``, ``noise``, ``folder:DIR``).

A kind is either *generated*, a pure function ``(seed, shape) -> image`` of a per-item seed, so a key
of that kind can be rebuilt from its master seed and compared bit for bit; or *read* from the user's
own files in a folder, given as ``NAME:DIR``. Each registers itself with
:func:`register_generated_kind` or :func:`register_folder_kind`; :func:`parse_trigger_kind` reads the
strings of the command line, and its errors list every valid form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import numpy as np

from backmark.errors import BackmarkError

CropMode = Literal["resize", "center-crop"]


class Generator(Protocol):
    """A uint8 ``(C, H, W)`` image, a pure function of a per-item seed and the shape."""

    def __call__(self, seed: bytes, shape: tuple[int, int, int]) -> np.ndarray: ...


class FolderReader(Protocol):
    """``[(file name, uint8 (C, H, W) image), ...]`` for every image in ``directory``, in key order."""

    def __call__(
        self, directory: str | Path, shape: tuple[int, int, int], *, mode: CropMode = "resize"
    ) -> list[tuple[str, np.ndarray]]: ...


@dataclass(frozen=True)
class TriggerKind:
    """One registered kind: ``generate`` or ``read`` is set, or neither for ``heldout`` (real images of
    the owner's data, drawn by keygen from a labelled pool)."""

    name: str
    description: str
    generate: Generator | None = None
    read: FolderReader | None = None

    @property
    def form(self) -> str:
        """How the kind is written: ``abstract``, or ``folder:DIR`` for a kind read from files."""
        return f"{self.name}:DIR" if self.read is not None else self.name

    def read_folder(
        self, folder: Path | None, shape: tuple[int, int, int], *, mode: CropMode = "resize"
    ) -> list[tuple[str, np.ndarray]]:
        """The images of ``folder``, for a kind read from files (see :class:`FolderReader`)."""
        if self.read is None or folder is None:
            raise BackmarkError(f"trigger kind {self.name} reads no folder; write it as {self.form}")
        return self.read(folder, shape, mode=mode)


_REGISTRY: dict[str, TriggerKind] = {}
G = TypeVar("G", bound=Generator)
R = TypeVar("R", bound=FolderReader)


def _add(kind: TriggerKind) -> None:
    if not kind.name or kind.name in _REGISTRY or ":" in kind.name:
        raise ValueError(f"trigger kind {kind.name!r} is empty, has a ':' or is registered twice")
    _REGISTRY[kind.name] = kind


def register_generated_kind(name: str, *, description: str) -> Callable[[G], G]:
    """Decorator that registers a seeded :class:`Generator` as trigger kind ``name``."""

    def wrap(generate: G) -> G:
        _add(TriggerKind(name, description, generate=generate))
        return generate

    return wrap


def register_folder_kind(name: str, *, description: str) -> Callable[[R], R]:
    """Decorator that registers a :class:`FolderReader` as trigger kind ``name``, written ``name:DIR``."""

    def wrap(read: R) -> R:
        _add(TriggerKind(name, description, read=read))
        return read

    return wrap


_add(
    TriggerKind(
        "heldout",
        "real images held out of your training data (keygen --data NAME); each label avoids the image's "
        "true class",
    )
)
_add(
    TriggerKind(
        "blend",
        "averages of two real images of two classes, held out of your data (keygen --data NAME); each label "
        "avoids both classes",
    )
)


def list_trigger_kinds() -> list[TriggerKind]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def trigger_kind_forms() -> list[str]:
    """The accepted kind strings, for help texts and error messages: ``abstract``, ``folder:DIR``..."""
    return [kind.form for kind in list_trigger_kinds()]


def get_trigger_kind(name: str) -> TriggerKind:
    """The kind registered as ``name`` (without ``:DIR``); an unknown one is a BackmarkError."""
    kind = _REGISTRY.get(name)
    if kind is None:
        raise BackmarkError(
            f"unknown trigger kind {name!r}; choose one of: {', '.join(trigger_kind_forms())}"
        )
    return kind


def parse_trigger_kind(text: str) -> tuple[TriggerKind, Path | None]:
    """``"abstract"`` -> (abstract, None); ``"folder:DIR"`` -> (folder, Path(DIR))."""
    name, sep, rest = text.partition(":")
    kind = get_trigger_kind(name)
    if kind.read is not None and not rest:
        raise BackmarkError(f"trigger kind {name} needs a folder of images: {kind.form}")
    if kind.read is None and sep:
        raise BackmarkError(f"trigger kind {name} is generated from the key's seed and takes no ':{rest}'")
    return kind, Path(rest) if kind.read is not None else None
