"""What a lineage test found: per layer and as one decision, with what each p-value assumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Test = Literal["exact", "robust", "either"]
TESTS: tuple[Test, ...] = ("exact", "robust", "either")

NULL = (
    "H0: the suspect's weights did not start from the owner's: the suspect was initialised independently "
    "of the owner's model, from a distribution that treats every hidden unit of a layer alike, and "
    "trained by a procedure that treats them alike (whatever its data, the owner's answers included)"
)
DETECTS = (
    "what this test detects is a shared initialisation: a model fine-tuned, pruned, quantised or otherwise "
    "derived from the owner's weights keeps it, but so does an innocent model trained from the same seed "
    "as the owner's; models trained afresh (extraction, distillation, retraining) do not, and are not seen"
)
EXACT_ASSUMES = (
    "exact under H0: the suspect's units of each layer are then exchangeable, so each layer's matching "
    "(made with the previous layers' matchings, which keeps it equivariant) is a uniformly random "
    "permutation, independent across layers, and the count of owner units matched to the suspect unit of "
    "the same index has an exact law; Fisher's combination of these discrete p-values is conservative. "
    "A suspect whose units were permuted is not seen by it"
)
ROBUST_ASSUMES = (
    "NOT exact: counts the units that a matching by incoming weights and a matching by outgoing weights "
    "pair alike, and takes the tail of Binomial(units, {margin:g}) per layer, i.e. assumes that for an "
    "innocent model each unit agrees independently with probability at most {margin:g}. That is not "
    "proved (independently trained models learn some similar units, which both matchings pair alike); "
    "it is measured on innocent pairs (docs/lineage.md), not guaranteed. It is unchanged by permutations "
    "of the suspect's units and by positive rescaling across a ReLU"
)
EITHER_ASSUMES = (
    "the smaller of the two p-values times 2 (Bonferroni), so its level holds only as far as the robust "
    "p-value's calibration holds"
)


@dataclass(frozen=True)
class LayerResult:
    """One group of hidden units (named after its first producing layer).

    ``matched[i]`` is the suspect unit paired with owner unit ``i`` by incoming weights (-1: none, when
    the owner has more units), ``matched_out`` the same by outgoing weights. ``hits`` counts owner units
    paired with the suspect unit of the same index, out of ``eligible`` that could be; ``agreements``
    counts units both matchings pair alike. ``cosine`` is the mean cosine similarity of the incoming
    weights of the paired units (1.0: identical up to scale).
    """

    name: str
    owner_units: int
    suspect_units: int
    matched: tuple[int, ...]
    matched_out: tuple[int, ...]
    cosine: float
    hits: int
    eligible: int
    exact_p: float
    exact_log10_p: float
    agreements: int
    agreement_eligible: int
    robust_p: float
    robust_log10_p: float


@dataclass(frozen=True)
class LineageResult:
    """The decision: ``verified`` when ``p_value <= alpha`` for the chosen ``test``.

    ``exact_p`` is Fisher's combination of the layers' exact p-values, ``robust_p`` that of the robust
    ones (``margin``: the share of agreeing units it allows an innocent pair); ``p_value`` is the
    chosen test's (``either``: ``min(1, 2 min(exact_p, robust_p))``). Every
    p-value comes with its ``log10`` because derived models give p-values below the smallest float.
    """

    test: Test
    alpha: float
    margin: float
    p_value: float
    log10_p_value: float
    verified: bool
    exact_p: float
    exact_log10_p: float
    robust_p: float
    robust_log10_p: float
    layers: tuple[LayerResult, ...]

    @property
    def assumptions(self) -> dict[str, str]:
        robust = ROBUST_ASSUMES.format(margin=self.margin)
        return {
            "null": NULL,
            "detects": DETECTS,
            "exact_p": EXACT_ASSUMES,
            "robust_p": robust,
            "p_value": {"exact": EXACT_ASSUMES, "robust": robust, "either": EITHER_ASSUMES}[self.test],
        }

    def figures(self) -> dict[str, Any]:
        """The test's figures as a claim records them, JSON-ready (the p-value and verdict are the claim's
        piece's own): the chosen test, both combined p-values, the margin, each layer's units, hits and
        mean cosine, and what the test assumes and detects."""
        a = self.assumptions
        return {
            "test": self.test,
            "exact_p": self.exact_p,
            "exact_log10_p": self.exact_log10_p,
            "robust_p": self.robust_p,
            "robust_log10_p": self.robust_log10_p,
            "margin": self.margin,
            "layers": [
                {"name": x.name, "units": x.owner_units, "hits": x.hits, "cosine": x.cosine}
                for x in self.layers
            ],
            "null": a["null"],
            "detects": a["detects"],
        }

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["layers"] = [asdict(layer) for layer in self.layers]
        record["assumptions"] = self.assumptions
        return record
