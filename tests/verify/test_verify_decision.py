"""The one decision rule: each of k pieces of evidence at alpha / k, verified if any holds."""

from __future__ import annotations

import pytest

from backmark.errors import BackmarkError
from backmark.verify.decision import Piece, decide_any, level_for, piece_level


def test_each_piece_gets_its_share_of_alpha() -> None:
    assert piece_level(1e-6, 2) == 5e-7
    assert level_for("either", 1e-6) == 5e-7
    assert level_for("labels", 1e-6) == level_for("label-free", 1e-6) == 1e-6
    assert piece_level(0.3, 3) == pytest.approx(0.1)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -1e-3, float("nan")])
def test_alpha_is_checked_in_one_place(alpha: float) -> None:
    with pytest.raises(BackmarkError, match="alpha must lie strictly between 0 and 1"):
        piece_level(alpha, 2)
    with pytest.raises(BackmarkError, match="alpha must lie strictly between 0 and 1"):
        decide_any(alpha, [Piece("a", 0.5, False)])


def test_no_piece_is_refused() -> None:
    with pytest.raises(BackmarkError, match="at least one piece"):
        decide_any(0.01, [])


def test_verified_if_any_piece_is_and_p_is_bonferroni() -> None:
    d = decide_any(
        0.01, [Piece("trigger", 0.4, False), Piece("response", 1e-4, True), Piece("x", 1.0, False)]
    )
    assert d.verified and d.passed == ("response",) and d.level == pytest.approx(0.01 / 3)
    assert d.p_value == pytest.approx(3e-4)
    none = decide_any(0.01, [Piece("a", 0.6, False), Piece("b", 0.9, False)])
    assert not none.verified and none.passed == () and none.p_value == 1.0
