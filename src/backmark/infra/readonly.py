"""Read-only mappings that survive pickling (frozen results hold them; worker processes receive them).

``types.MappingProxyType`` keeps a frozen dataclass's dict fields from being changed in place, but pickle
cannot save it (its class is not importable by name), so a result or key holding one could not be sent to
a worker process (``reproduce --workers``). Importing this module registers a reducer that pickles a
proxy as :func:`readonly` of a plain copy of its dict; :func:`json_default` lets ``json.dumps`` write one.
"""

from __future__ import annotations

import copyreg
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def readonly(values: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view of a copy of ``values``."""
    return MappingProxyType(dict(values))


def json_default(value: object) -> dict[str, Any]:
    """``json.dumps(..., default=json_default)``: a read-only mapping written as the object it views."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _reduce(proxy: MappingProxyType[str, Any]) -> tuple[Any, tuple[dict[str, Any]]]:
    return readonly, (dict(proxy),)


copyreg.pickle(MappingProxyType, _reduce)
