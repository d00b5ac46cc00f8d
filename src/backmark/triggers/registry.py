"""The trigger-kind registry: how a key's images are made, by name (``abstract``, ``noise``, ``folder:DIR``).

A kind is either *generated*, a pure function ``(seed, shape) -> image`` of a per-item seed, so a key
of that kind can be rebuilt from its master seed and compared bit for bit; or *read* from the user's
own files in a folder, given as ``NAME:DIR``. Each registers itself with
:func:`register_generated_kind` or :func:`register_folder_kind` (two decorators, since the two take
functions of two shapes); :func:`get_trigger_kind` finds one, :func:`list_trigger_kinds` lists them (the
shape of every plugin table, :mod:`backmark.infra.plugins`), and :func:`parse_trigger_kind` reads the
strings of the command line; its errors list every valid form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import numpy as np

from backmark.errors import BackmarkError
from backmark.infra.plugins import Registry

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


_KINDS: Registry[TriggerKind] = Registry("trigger kind", forms=lambda kind: [kind.form])
G = TypeVar("G", bound=Generator)
R = TypeVar("R", bound=FolderReader)


def register_generated_kind(name: str, *, description: str) -> Callable[[G], G]:
    """Decorator that registers a seeded :class:`Generator` as trigger kind ``name``."""

    def kind(generate: G) -> TriggerKind:
        return TriggerKind(name, description, generate=generate)

    return _KINDS.register(name, kind)


def register_folder_kind(name: str, *, description: str) -> Callable[[R], R]:
    """Decorator that registers a :class:`FolderReader` as trigger kind ``name``, written ``name:DIR``."""

    def kind(read: R) -> TriggerKind:
        return TriggerKind(name, description, read=read)

    return _KINDS.register(name, kind)


# the kinds keygen draws from the owner's own data: neither generated nor read from a folder
for _kind in (
    TriggerKind(
        "heldout",
        "real images held out of your training data (keygen --data NAME); each label avoids the image's "
        "true class",
    ),
    TriggerKind(
        "blend",
        "averages of two real images of two classes, held out of your data (keygen --data NAME); each label "
        "avoids both classes",
    ),
):
    _KINDS.add(_kind.name, _kind)


def list_trigger_kinds() -> list[TriggerKind]:
    """Every registered trigger kind, by name."""
    return _KINDS.entries()


def trigger_kind_forms() -> list[str]:
    """The accepted kind strings, for help texts and error messages: ``abstract``, ``folder:DIR``..."""
    return _KINDS.forms()


def get_trigger_kind(name: str) -> TriggerKind:
    """The kind registered as ``name`` (without ``:DIR``); an unknown one is a one-line BackmarkError."""
    return _KINDS.get(name)


def parse_trigger_kind(text: str) -> tuple[TriggerKind, Path | None]:
    """``"abstract"`` -> (abstract, None); ``"folder:DIR"`` -> (folder, Path(DIR))."""
    name, sep, rest = text.partition(":")
    kind = get_trigger_kind(name)
    if kind.read is not None and not rest:
        raise BackmarkError(f"trigger kind {name} needs a folder of images: {kind.form}")
    if kind.read is None and sep:
        raise BackmarkError(f"trigger kind {name} is generated from the key's seed and takes no ':{rest}'")
    return kind, Path(rest) if kind.read is not None else None
