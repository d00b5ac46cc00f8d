"""The default margin against what was measured: docs/contrast-strong.json (benchmarks/contrast_strong.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from backmark.constants import CONTRAST_DELTA

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
