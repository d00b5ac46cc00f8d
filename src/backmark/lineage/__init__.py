"""The weight-lineage test (white-box): do a suspect's weights descend from the owner's?

``lineage_test(owner=..., suspect=..., input_shape=(1, 28, 28))`` matches the two models' hidden units
layer by layer and returns a :class:`LineageResult`: an exact p-value under the stated null hypothesis
(independent initialisations), a permutation-robust one whose calibration is measured, and the decision.
docs/lineage.md derives both and records what they see and what they do not.
"""

from backmark.lineage.compare import compare_weights, lineage_test
from backmark.lineage.evasion import permute_units, rescale_units
from backmark.lineage.plan import Consumer, Group, Plan, PlanError, Producer, trace_plan
from backmark.lineage.result import TESTS, LayerResult, LineageResult, Test
from backmark.lineage.stats import fisher_log10, hits_tail

__all__ = [
    "TESTS",
    "Consumer",
    "Group",
    "LayerResult",
    "LineageResult",
    "Plan",
    "PlanError",
    "Producer",
    "Test",
    "compare_weights",
    "fisher_log10",
    "hits_tail",
    "lineage_test",
    "permute_units",
    "rescale_units",
    "trace_plan",
]
