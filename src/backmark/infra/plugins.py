"""One table of plugins by name: the shape shared by the attack, model, trigger-kind and dataset registries.

Each feature module keeps one :class:`Registry` and exposes it through three functions in timm's manner:
``register_<kind>(name, ...)`` (a decorator), ``get_<kind>(name)`` (the registered entry, or a one-line
:class:`BackmarkError` that lists every valid choice) and ``list_<kind>s()`` (every entry, by name). What
a feature builds from an entry (``create_attack``, ``create_model``, ``load_dataset``,
``parse_trigger_kind``) stays in the feature, beside the checks of its own options.

A name is what the command line writes before a ``:`` (``ftal:lr=0.01``, ``folder:DIR``,
``mnist:DIR``, ``MODULE:CALLABLE``), so it is refused here if it is empty or has one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from backmark.errors import BackmarkError

T = TypeVar("T")
F = TypeVar("F")


class Registry(Generic[T]):
    """Entries of type ``T`` by name, for one kind of plugin.

    Args:
        kind: the user's word for the plugin, in errors: ``"attack"``, ``"architecture"``...
        forms: how an entry is written on the command line, for the list of choices (default: its name;
            a dataset read from a folder is ``mnist:DIR`` as well as ``mnist``).
        also: words added after the choices, for forms no entry has (``"or MODULE:CALLABLE ..."``).
    """

    def __init__(
        self, kind: str, *, forms: Callable[[T], Sequence[str]] | None = None, also: str = ""
    ) -> None:
        self.kind = kind
        self._forms = forms
        self._also = also
        self._entries: dict[str, T] = {}

    def _check_free(self, name: str) -> None:
        """A bad name is a programming error (the plugin's author's, not the user's): a ValueError."""
        if not name or ":" in name or name in self._entries:
            raise ValueError(f"{self.kind} name {name!r} is empty, has a ':' or is registered twice")

    def add(self, name: str, entry: T) -> None:
        """Register ``entry`` as ``name``."""
        self._check_free(name)
        self._entries[name] = entry

    def register(self, name: str, entry: Callable[[F], T]) -> Callable[[F], F]:
        """A decorator that registers ``entry(obj)`` as ``name`` and hands ``obj`` back unchanged.

        The name is checked before ``entry`` runs, so a second registration fails as one, whatever
        ``entry`` would have thought of the object.
        """

        def wrap(obj: F) -> F:
            self._check_free(name)
            self.add(name, entry(obj))
            return obj

        return wrap

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown one is a one-line BackmarkError naming every form."""
        found = self._entries.get(name)
        if found is None:
            also = f", {self._also}" if self._also else ""
            raise BackmarkError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.forms())}{also}")
        return found

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[T]:
        """The registered entries, in the order of :meth:`names`."""
        return [self._entries[name] for name in self.names()]

    def forms(self) -> list[str]:
        """Every way an entry is written, in the order of :meth:`names`: for help texts and errors."""
        if self._forms is None:
            return self.names()
        return [form for name in self.names() for form in self._forms(self._entries[name])]


__all__ = ["Registry"]
