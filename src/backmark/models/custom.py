"""The user's own architectures: ``MODULE:CALLABLE``, a factory importable from the user's code.

``backmark train --arch mymodels:make_net --arch-args '{"width": 64}'`` imports ``mymodels`` (from the
current folder or the Python path) and calls ``make_net(num_classes=10, input_shape=(1, 28, 28),
width=64)``; a factory that also takes ``mean`` and ``std`` keywords gets the training data's channel
statistics (backmark's trainer feeds float [0, 1] pixels, so the model normalises its own inputs). The
checkpoint records the name and the arguments; loading it imports the user's code again, which runs it,
so a loader does that only when told to (``allow_code=True``, ``--trust-code``).

>>> is_user_arch("cnn"), is_user_arch("mymodels:make_net")
(False, True)
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from backmark.errors import BackmarkError, first_line

_NAME = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
TRUST_HINT = "pass --trust-code (allow_code=True in Python) if you trust that code"


def is_user_arch(arch: str) -> bool:
    """Whether ``arch`` names the user's own factory (``MODULE:CALLABLE``) rather than a registered one."""
    return ":" in arch


def resolve_factory(arch: str) -> Callable[..., Any]:
    """Import ``MODULE`` and return its ``CALLABLE`` (dotted attributes allowed); one-line errors.

    The current folder is on the import path, as for ``python -m``, so a file ``./mymodels.py`` is found.
    """
    if not _NAME.match(arch):
        raise BackmarkError(
            f"architecture {arch!r} must be a registered name (`backmark models`) or MODULE:CALLABLE, "
            "e.g. mymodels:make_net"
        )
    module_name, _, attr = arch.partition(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackmarkError(
            f"cannot import {module_name!r} for architecture {arch} ({first_line(exc)}); run from the "
            "folder that holds it or put it on PYTHONPATH"
        ) from None
    except Exception as exc:  # the user's module failed while importing: say so, in one line
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        raise BackmarkError(f"importing {module_name!r} failed: {reason}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BackmarkError(f"module {module_name!r} has no {attr!r} (architecture {arch})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BackmarkError(f"{arch} is not callable; name a function or an nn.Module class")
    return obj  # type: ignore[no-any-return]


def takes_stats(factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` takes ``mean`` and ``std`` keywords (then it gets the data's statistics)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "mean" in params and "std" in params


def build_user_model(
    arch: str, *, num_classes: int, input_shape: tuple[int, int, int], arch_args: Mapping[str, Any]
) -> nn.Module:
    """Call the factory ``arch`` names with the class count, the input shape and ``arch_args``."""
    factory = resolve_factory(arch)
    try:
        model = factory(num_classes=num_classes, input_shape=tuple(input_shape), **arch_args)
    except TypeError as exc:
        raise BackmarkError(
            f"{arch} cannot be called as {arch.partition(':')[2]}(num_classes=..., input_shape=..., "
            f"**arch_args) ({first_line(exc)}); give it those keywords, and options as --arch-args JSON"
        ) from None
    if not isinstance(model, nn.Module):
        raise BackmarkError(f"{arch} returned {type(model).__name__}, not a torch.nn.Module")
    return model


__all__ = ["TRUST_HINT", "build_user_model", "is_user_arch", "resolve_factory", "takes_stats"]
