"""The default margin against what was measured: docs/contrast-strong.json (benchmarks/contrast_strong.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from backmark.constants import CONTRAST_DELTA, CONTRAST_SCORE_DELTA

MEASURED = Path(__file__).resolve().parents[2] / "docs" / "contrast-strong.json"


def test_default_margin_follows_the_rule_on_every_measured_innocent() -> None:
    """The margin is the benchmark's rule (largest innocent rate - 1/2 + 0.02, rounded up to 0.01) over
    every innocent taken against every choice of the deployed model: lowering it without new
    measurements, or a measurement that no longer fits under it, fails here."""
    result = json.loads(MEASURED.read_text())
    rates = [
        r["rate"]
        for family in result["families"].values()
        for choice in family["choices"]
        for r in choice["models"].values()
    ]
    assert len(rates) >= 100  # every family member as the deployed model, with its innocents
    assert all(len(f["choices"]) >= 5 for f in result["families"].values())
    rule = math.ceil((max(rates) - 0.5 + 0.02) * 100) / 100
    assert rule <= CONTRAST_DELTA
    assert max(rates) <= 0.5 + CONTRAST_DELTA
    # no innocent flagged at the claim's level in the measurement itself
    assert all(
        r["p_value"] > 1e-6
        for family in result["families"].values()
        for choice in family["choices"]
        for r in choice["models"].values()
    )


SCORES = MEASURED.with_name("contrast-scores.json")


def test_default_score_margin_follows_the_same_rule_on_the_same_innocents() -> None:
    """The score test's margin (docs/contrast-scores.json, benchmarks/contrast_scores.py) by the same rule,
    over the same innocent/deployed pairs as the answers' margin."""
    result = json.loads(SCORES.read_text())
    rates = [
        r["rate"] for family in result["families"].values() for c in family for r in c["models"].values()
    ]
    answers = json.loads(MEASURED.read_text())
    pairs = sum(len(c["models"]) for f in answers["families"].values() for c in f["choices"])
    assert len(rates) == pairs  # the same innocents against the same choices
    rule = math.ceil((max(rates) - 0.5 + 0.02) * 100) / 100
    assert rule <= CONTRAST_SCORE_DELTA
    assert all(
        r["p_value"] > 1e-6
        for family in result["families"].values()
        for c in family
        for r in c["models"].values()
    )


QUERIED = MEASURED.with_name("contrast-queried.json")


def test_the_queried_count_uses_the_answers_margin_and_the_rule_holds_there() -> None:
    """The queried images' count (docs/contrast-queried.json, benchmarks/contrast_queried.py) takes the
    answers' margin: the same rule over innocents on the images the thief queried (some trained on those
    very images with their true labels), against every choice of the deployed model, must fit under it."""
    result = json.loads(QUERIED.read_text())
    rates = [
        r["rate"] for family in result["families"].values() for c in family for r in c["models"].values()
    ]
    assert len(rates) >= 300 and all(len(f) >= 5 for f in result["families"].values())
    assert result["delta"] == CONTRAST_DELTA
    assert math.ceil((max(rates) - 0.5 + 0.02) * 100) / 100 <= CONTRAST_DELTA
    assert all(
        r["p_value"] > 1e-6 for f in result["families"].values() for c in f for r in c["models"].values()
    )
