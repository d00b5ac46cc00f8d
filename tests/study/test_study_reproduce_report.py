"""The results document's summary of the extractions through the serving API (the response-mark study)."""

from __future__ import annotations

import math
from typing import Any

from backmark.study.reproduce_report import served_ownership


def _row(name: str, what: str, passed: list[str], ps: dict[str, float]) -> dict[str, Any]:
    evidence = {k: {"p_value": p, "log10_p_value": math.log10(p)} for k, p in ps.items()}
    return {
        "name": name,
        "what": what,
        "every_piece": {"verified": bool(passed), "passed": passed, "level": 2e-7, "evidence": evidence},
    }


def test_served_extractions_are_counted_and_the_missed_ones_name_their_closest_piece() -> None:
    response = {
        "rows": [
            _row("top-1", "extracted", [], {"labels": 0.5, "contrast": 1.2e-6, "response": 0.2}),
            _row("vote", "extracted", ["contrast"], {"labels": 0.6, "contrast": 4e-12}),
            _row("clean copy", "clean copy", ["contrast"], {"contrast": 1e-14}),  # a control, not counted
            _row("served", "served", ["labels"], {"labels": 1e-100}),
        ]
    }
    (line,) = served_ownership(response)
    assert "shown after 1 of 2 extractions: vote (contrast)" in line
    assert "Not shown: top-1 (smallest: contrast p 1.2e-06 against its level 2e-07)" in line
    assert "clean copy" not in line and "served" not in line.replace("serving", "")


def test_no_response_study_no_line() -> None:
    assert served_ownership(None) == []
    assert served_ownership({"rows": [_row("served", "served", ["labels"], {"labels": 1e-100})]}) == []
