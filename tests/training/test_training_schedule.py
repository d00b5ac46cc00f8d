"""The one learning-rate schedule implementation."""

from __future__ import annotations

import itertools

import pytest

from backmark.training import SCHEDULES, Schedule, lr_factor


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_learning_rate_schedules(schedule: Schedule) -> None:
    total = 200
    f = [lr_factor(schedule, step, total) for step in range(total + 1)]
    assert max(f) == pytest.approx(1.0) and min(f) >= 0.0
    if schedule == "constant":
        assert f == [1.0] * (total + 1)
    elif schedule == "step":
        assert f[99] == 1.0 and f[100] == pytest.approx(0.1) and f[150] == pytest.approx(0.01)
    elif schedule == "cosine":
        assert f[0] == 1.0 and f[100] == pytest.approx(0.5) and f[total] == pytest.approx(0.0, abs=1e-9)
    else:
        warm = 30  # 15% of the steps
        assert f[0] == pytest.approx(1 / warm) and f[warm - 1] == pytest.approx(1.0)
        assert all(a < b for a, b in itertools.pairwise(f[:warm]))  # linear warm-up
        assert all(a >= b for a, b in itertools.pairwise(f[warm - 1 :]))  # then only down
        assert f[warm + (total - warm) // 2] == pytest.approx(0.5, abs=0.01)  # cosine: half way, half
        assert f[total] == pytest.approx(0.0, abs=1e-9)


def test_onecycle_never_exceeds_the_peak_on_short_runs() -> None:
    for total in range(1, 30):
        assert max(lr_factor("onecycle", s, total) for s in range(total)) == pytest.approx(1.0)
