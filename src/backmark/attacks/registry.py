"""The attack registry: attacks by name, and the ``NAME[:KEY=VALUE...]`` strings of the command line.

``create_attack("ftal", lr=0.01)`` builds one attack; ``parse_attacks("ftal:lr=0.01,prune:sparsity=0.2/0.5")``
builds a list (``/`` separates the values of a sweep, so that string gives three attacks). Unknown names and
options are one-line errors that list what is valid.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from backmark.attacks.base import Access, Attack
from backmark.errors import BackmarkError
from backmark.infra.plugins import Registry

_ATTACKS: Registry[type[Attack]] = Registry("attack")
A = TypeVar("A", bound=type[Attack])


@dataclass(frozen=True)
class AttackInfo:
    """What ``backmark attack --attacks list`` prints about one registered attack."""

    name: str
    access: Access
    summary: str
    defaults: Mapping[str, Any]  # read-only
    cls: type[Attack]


def register_attack(name: str) -> Callable[[A], A]:
    """Class decorator: add an :class:`Attack` subclass to the registry as ``name``, its ``name`` too."""

    def named(cls: A) -> type[Attack]:
        cls.name = name
        return cls

    return _ATTACKS.register(name, named)


def attack_names() -> list[str]:
    """The registered attacks' names, sorted: what ``NAME`` in ``NAME[:KEY=VALUE...]`` may be."""
    return _ATTACKS.names()


def _cls(name: str) -> type[Attack]:
    """The class registered as ``name``, in any case and with spaces around ignored."""
    return _ATTACKS.get(name.strip().lower())


def get_attack(name: str) -> AttackInfo:
    """The attack registered as ``name`` (see :func:`_cls`); an unknown one is a one-line BackmarkError."""
    cls = _cls(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    defaults = MappingProxyType(dataclasses.asdict(cls()))
    return AttackInfo(cls.name, cls.access, doc[0] if doc else "", defaults, cls)


def list_attacks() -> list[AttackInfo]:
    """Every registered attack, by name."""
    return [get_attack(name) for name in attack_names()]


def option_names(name: str) -> list[str]:
    """The options of the attack registered as ``name``, in the order its class declares them."""
    return [f.name for f in dataclasses.fields(_cls(name))]


def create_attack(name: str, **params: Any) -> Attack:
    """Build the attack registered as ``name`` with ``params``; errors name the valid choices."""
    cls = _cls(name)
    valid = option_names(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise BackmarkError(
            f"attack {cls.name} has no option {unknown[0]!r}; its options: {', '.join(valid)}"
        )
    return cls(**params)


def _convert(text: str, hint: Any, where: str) -> Any:
    """Read ``text`` as a value of type ``hint`` (int, float, bool, str, a Literal, or X | None)."""
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise BackmarkError(f"{where} must be one of {', '.join(map(str, choices))}; got {text!r}")
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if text.lower() == "none" and len(options) < len(get_args(hint)):
            return None
        return _convert(text, options[0], where)
    converters: dict[Any, Callable[[str], Any]] = {int: int, float: float, str: str}
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise BackmarkError(f"{where} must be true or false; got {text!r}")
    try:
        return converters[hint](text)
    except (KeyError, ValueError):
        raise BackmarkError(f"{where} must be a {getattr(hint, '__name__', hint)}; got {text!r}") from None


def parse_attack(spec: str) -> list[Attack]:
    """``"NAME[:KEY=VALUE[:KEY=VALUE...]]"`` -> the attacks it names (one per value of a ``/`` sweep)."""
    name, *options = (part.strip() for part in spec.strip().split(":"))
    cls = _cls(name)
    hints = get_type_hints(cls)
    valid = option_names(cls.name)
    grid: list[dict[str, Any]] = [{}]
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in valid:
            raise BackmarkError(
                f"bad option {option!r} for attack {cls.name}; write KEY=VALUE with KEY one of: "
                f"{', '.join(valid)}"
            )
        values = [_convert(v.strip(), hints[key], f"{cls.name} option {key}") for v in value.split("/")]
        grid = [{**point, key: v} for point in grid for v in values]
    return [create_attack(cls.name, **point) for point in grid]


def parse_attacks(text: str) -> list[Attack]:
    """A comma-separated list of attack specs (see :func:`parse_attack`)."""
    specs = [s for s in text.split(",") if s.strip()]
    if not specs:
        raise BackmarkError(f"no attack given; choose from: {', '.join(attack_names())}")
    return [attack for spec in specs for attack in parse_attack(spec)]
