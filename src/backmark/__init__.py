"""backmark: watermark image classifiers by backdooring them (Adi et al., USENIX Security 2018).

``import backmark as bm`` gives the front door (:mod:`backmark.api`), in the words of the command line:
:func:`keygen`, :func:`save_key`, :func:`load_key`; :class:`Marker` (mark inside your own training loop)
or :func:`embed` (the built-in trainer) and :func:`train`; :func:`save_model`, :func:`load_model`;
:func:`verify`; the public check :func:`challenge`, :func:`prove`, :func:`check`; :func:`register`;
:class:`TrainConfig`, :func:`load_dataset` and :class:`BackmarkError`. Everything else stays in its
subpackage. The names are loaded on first use, so ``import backmark`` (and ``backmark --help``) does not
import torch.

``backmark.verify`` and ``backmark.embed`` are these functions even after their subpackages of the same
names are imported; reach the subpackages with ``from backmark.verify import ...``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    # for type checkers only: at run time __getattr__ imports each name on first use
    from backmark.api import *  # noqa: F403  (the front door's functions; __all__ below says which)
    from backmark.data import load_dataset
    from backmark.embed import TrainConfig
    from backmark.embed.marker import Marker
    from backmark.errors import BackmarkError

# The front door's names, listed once: __getattr__ imports each from its module on first use, and
# type checkers find the functions of backmark.api through the star import above.
__all__ = [  # noqa: F405  (defined by the star import, for type checkers; at run time by __getattr__)
    "BackmarkError",
    "Marker",
    "TrainConfig",
    "__version__",
    "challenge",
    "check",
    "embed",
    "keygen",
    "load_dataset",
    "load_key",
    "load_model",
    "prove",
    "register",
    "save_key",
    "save_model",
    "train",
    "verify",
]

# the names that do not live in backmark.api, and where they do
_HOMES = {
    "BackmarkError": "backmark.errors",
    "Marker": "backmark.embed.marker",
    "TrainConfig": "backmark.embed",
    "load_dataset": "backmark.data",
}
# name -> the module it lives in, imported on first access
_LAZY = {name: _HOMES.get(name, "backmark.api") for name in __all__ if name != "__version__"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'backmark' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


class _FrontDoor(types.ModuleType):
    """The package module: importing ``backmark.verify`` (or ``.embed``) sets the package's attribute of
    that name to the subpackage; this keeps the front-door function there instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _FrontDoor


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
