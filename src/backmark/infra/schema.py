"""Exact checks of JSON documents from outside, declared once per document as a schema.

A schema is a tree of small field types: :class:`Text` (a string that must *fully* match a pattern, with
a length range), :class:`Integer` (an ``int``, never a ``bool``, in a range), :class:`Const`,
:class:`Nullable`, :class:`Array` and :class:`Record` (exactly the declared keys; optional ones may be
missing; no others). ``schema.check(value)`` returns the value or raises :class:`SchemaError` naming the
first bad field, so a service turns that one line into its 400 answer.

:func:`parse_json` is the strict parser for bytes from outside: it refuses ``NaN`` and ``Infinity``
(not JSON, and not encodable in an answer), a document nested deeper than Python can recurse, and
numbers too long to convert, each as a :class:`SchemaError` rather than an exception from deep inside.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from backmark.errors import BackmarkError


class SchemaError(BackmarkError):
    """A document from outside that does not fit its schema; the message names the field."""


class Schema(Protocol):
    def check(self, value: Any, where: str = "") -> Any: ...


def _at(where: str, what: str) -> str:
    return f"{where}: {what}" if where else what


@dataclass(frozen=True)
class Text:
    """A string of ``min_len`` to ``max_len`` characters that fully matches ``pattern`` (if given)."""

    pattern: str | None = None
    min_len: int = 0
    max_len: int = 256
    describe: str = ""  # what the pattern means, for the message ("64 lower-case hex digits")

    def check(self, value: Any, where: str = "") -> Any:
        if type(value) is not str:
            raise SchemaError(_at(where, f"must be a string, not {type(value).__name__}"))
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaError(
                _at(where, f"must have {self.min_len} to {self.max_len} characters, not {len(value)}")
            )
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise SchemaError(_at(where, f"must be {self.describe or 'of the form ' + self.pattern}"))
        return value


@dataclass(frozen=True)
class Integer:
    """An ``int`` (a bool or a float such as 1.0 is refused) in ``[low, high]``."""

    low: int = 0
    high: int = 2**62

    def check(self, value: Any, where: str = "") -> Any:
        if type(value) is not int:
            raise SchemaError(_at(where, f"must be an integer, not {type(value).__name__}"))
        if not self.low <= value <= self.high:
            raise SchemaError(_at(where, f"must be between {self.low} and {self.high}"))
        return value


@dataclass(frozen=True)
class Const:
    """Exactly ``value``, of exactly its type (``1`` is not ``True`` and not ``1.0``)."""

    value: str | int | bool

    def check(self, value: Any, where: str = "") -> Any:
        if type(value) is not type(self.value) or value != self.value:
            raise SchemaError(_at(where, f"must be {json.dumps(self.value)}"))
        return value


@dataclass(frozen=True)
class OneOf:
    """One of the strings ``choices``."""

    choices: tuple[str, ...]

    def check(self, value: Any, where: str = "") -> Any:
        if type(value) is not str or value not in self.choices:
            raise SchemaError(_at(where, f"must be one of {', '.join(self.choices)}"))
        return value


@dataclass(frozen=True)
class Nullable:
    """``null`` or what ``inner`` accepts."""

    inner: Schema

    def check(self, value: Any, where: str = "") -> Any:
        return None if value is None else self.inner.check(value, where)


@dataclass(frozen=True)
class Anything:
    """Any JSON value (left to a later, specific check: image data, say)."""

    def check(self, value: Any, where: str = "") -> Any:
        return value


@dataclass(frozen=True)
class Array:
    """A list of ``min_len`` to ``max_len`` items, each checked by ``item``; ``unique`` refuses repeats."""

    item: Schema
    min_len: int = 0
    max_len: int = 1000
    unique: bool = False

    def check(self, value: Any, where: str = "") -> Any:
        if type(value) is not list:
            raise SchemaError(_at(where, f"must be a list, not {type(value).__name__}"))
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaError(
                _at(where, f"must have {self.min_len} to {self.max_len} items, not {len(value)}")
            )
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]")
        if self.unique and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            raise SchemaError(_at(where, "must not repeat an item"))
        return value


@dataclass(frozen=True)
class Record:
    """A JSON object with exactly the keys of ``fields`` (those in ``optional`` may be missing)."""

    fields: Mapping[str, Schema]
    optional: frozenset[str] = field(default_factory=frozenset)

    def check(self, value: Any, where: str = "") -> Any:
        if type(value) is not dict:
            raise SchemaError(_at(where, f"must be a JSON object, not {type(value).__name__}"))
        unknown = sorted(k for k in value if k not in self.fields)
        missing = sorted(k for k in self.fields if k not in value and k not in self.optional)
        if unknown or missing:
            said = [f"missing {', '.join(missing)}"] if missing else []
            said += [f"unknown {', '.join(repr(k)[:40] for k in unknown[:5])}"] if unknown else []
            raise SchemaError(_at(where, f"has {'; '.join(said)} field(s)"))
        for name, schema in self.fields.items():
            if name in value:
                schema.check(value[name], f"{where}.{name}" if where else name)
        return value


HEX64 = Text(r"[0-9a-f]{64}", 64, 64, "64 lower-case hex digits")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as infinity
        raise ValueError(f"{text[:20]} is out of range")
    return value


def parse_json(data: bytes | str, *, what: str = "the body") -> Any:
    """``data`` parsed strictly (no NaN/Infinity, bounded nesting); a SchemaError says what is wrong."""
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise SchemaError(f"{what} is nested too deeply") from None
    except UnicodeDecodeError:
        raise SchemaError(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError:
        raise SchemaError(f"{what} is not valid JSON") from None
    except ValueError as exc:  # NaN, Infinity, 1e400, an integer of more than 4300 digits
        raise SchemaError(f"{what} holds a number JSON cannot carry ({str(exc)[:60]})") from None
