"""attacks/base.py's option check: ranges and words written once per attack, read as written."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backmark.attacks.base import require_options
from backmark.errors import BackmarkError


@pytest.mark.parametrize(
    ("value", "spec", "holds"),
    [
        (0.0, "(0, 1]", False),
        (1e-9, "(0, 1]", True),
        (1.0, "(0, 1]", True),
        (1.0, "[0, 1)", False),
        (0, "[0, 1)", True),
        (0.5, "(0.5, 1)", False),
        (1000, "0..1000", True),
        (1001, "0..1000", False),
        (3.0, "1..16", False),  # an integer range takes integers only
        (True, "0..1", False),  # and not a bool
        (-2, "-3..-1", True),
        (np.int64(5), "1..100", True),  # numpy's numbers, as a sweep over np.arange gives them
        (np.float32(0.5), "(0, 1]", True),
        (np.float64(2.0), "1..16", False),
    ],
)
def test_require_options_reads_ranges_as_written(value: object, spec: str, holds: bool) -> None:
    @dataclasses.dataclass(frozen=True)
    class Options:
        name: str = "toy"
        x: object = None

    if holds:
        require_options(Options(x=value), {"x": spec})
    else:
        with pytest.raises(BackmarkError, match=r"^toy: x must "):
            require_options(Options(x=value), {"x": spec})
    require_options(Options(x=None), {"x": spec})  # None is off: not checked


def test_a_range_written_wrong_is_a_programming_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class Options:
        x: float = 0.5

    with pytest.raises(ValueError, match="not a range: '0 to 1'"):
        require_options(Options(), {"x": "0 to 1"})
