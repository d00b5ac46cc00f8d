"""Adaptive attackers: for an attack with a strength knob, the strongest setting within the budget.

A fixed list of settings answers "what did these settings leave?"; an attacker asks "how hard can I push
before the model is no longer worth stealing?". :func:`strongest_within_budget` answers that for one knob:
given the knob's values ordered from weakest to strongest (a learning rate, a number of epochs, a pruning
sparsity, a bit width, a noise level, a detector's quantile ...), it finds by bisection the strongest value
whose attack costs at most ``max_drop`` of test accuracy (5 points, the benchmark's budget), running the
attack only at the values bisection visits, and reports what that attack left of the mark. Bisection
assumes the accuracy cost grows with strength; every value it ran is reported, so a non-monotone case
shows. A removal at any value it ran (within budget) is reported too, strongest or not.

    from backmark.study.search import SEARCHES, strongest_within_budget
    found = strongest_within_budget(trial, SEARCHES[0], baseline=baseline)
    found.strongest.evidence            # what the strongest attack within budget left
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from backmark.attacks import Attack, create_attack
from backmark.errors import BackmarkError
from backmark.log import Log, say
from backmark.study.measure import AttackOutcome, Baseline, Trial, run_attack, within_budget


@dataclass(frozen=True)
class Knob:
    """Attack ``attack`` (a registry name) with option ``option`` set to each of ``values`` (weakest first)
    and the other options ``fixed``."""

    attack: str
    option: str
    values: tuple[float, ...]
    fixed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.values:
            raise BackmarkError(f"a search of {self.attack}:{self.option} needs at least one value")
        for value in self.values:
            self.build(value)  # every value is a valid setting: refused now, not an hour into a run

    def build(self, value: float) -> Attack:
        return create_attack(self.attack, **{**self.fixed, self.option: value})

    def describe(self) -> str:
        fixed = "".join(f", {k}={v}" for k, v in self.fixed.items())
        shown = ", ".join(f"{v:g}" for v in self.values)
        return f"{self.attack} {self.option} in ({shown}){fixed}"


@dataclass(frozen=True)
class SearchOutcome:
    """One knob searched: every attack run (in the order run) and the strongest within the budget.

    ``strongest`` is None when even the weakest value cost more than the budget. ``removed`` is True when
    any attack run within the budget removed the mark.
    """

    knob: Knob
    tried: tuple[tuple[float, AttackOutcome], ...]
    strongest_value: float | None
    max_drop: float

    @property
    def strongest(self) -> AttackOutcome | None:
        return next((o for v, o in self.tried if v == self.strongest_value), None)

    @property
    def removed(self) -> bool:
        return any(o.removed for _, o in self.tried)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.knob.attack,
            "option": self.knob.option,
            "values": list(self.knob.values),
            "fixed": dict(self.knob.fixed),
            "max_drop": self.max_drop,
            "strongest_value": self.strongest_value,
            "removed": self.removed,
            "tried": [{"value": v, **o.to_dict()} for v, o in self.tried],
        }


def strongest_within_budget(
    trial: Trial,
    knob: Knob,
    *,
    baseline: Baseline,
    log: Log | None = None,
    known: Mapping[Attack, AttackOutcome] | None = None,
) -> SearchOutcome:
    """Bisect ``knob.values`` for the strongest value whose attack loses at most the trial's ``max_drop``.

    Runs at most ceil(log2(len(values) + 1)) attacks, each on the trial's unchanged model
    (:func:`backmark.study.run_attack`). ``known`` holds outcomes of attacks already run on the same
    trial (a fixed suite): an attack equal to one of them (every option, the seed
    included) is not run again, as attacks seed their own random streams and give the same outcome.
    """
    tried: dict[int, AttackOutcome] = {}
    order: list[int] = []
    low, high = -1, len(knob.values)  # values[low] known within budget (-1: none yet); values[high] not
    while high - low > 1:
        mid = (low + high) // 2
        value = knob.values[mid]
        attack = knob.build(value)
        outcome = None if known is None else known.get(attack)
        reused = outcome is not None
        if outcome is None:
            outcome = run_attack(trial, attack, baseline=baseline)
        tried[mid] = outcome
        order.append(mid)
        e = outcome.evidence
        inside = within_budget(baseline.test_acc, outcome.test_acc_after, trial.max_drop)
        say(
            log,
            f"  {knob.attack} {knob.option}={value:g}: test acc {outcome.test_acc_after:.2%} "
            f"({-100 * outcome.acc_drop:+.1f} points, {'within' if inside else 'over'} budget), triggers "
            f"{e.matches}/{e.n}, p {e.p_value:.2g}{': REMOVED' if outcome.removed else ''}"
            f"{' (run before, reused)' if reused else ''}",
        )
        if inside:
            low = mid
        else:
            high = mid
    return SearchOutcome(
        knob=knob,
        tried=tuple((knob.values[i], tried[i]) for i in order),
        strongest_value=None if low < 0 else knob.values[low],
        max_drop=trial.max_drop,
    )


def search_all(
    trial: Trial,
    knobs: Sequence[Knob],
    *,
    baseline: Baseline,
    log: Log | None = None,
    known: Mapping[Attack, AttackOutcome] | None = None,
) -> list[SearchOutcome]:
    """:func:`strongest_within_budget` for every knob, in order (``known``: outcomes to reuse)."""
    found = []
    for i, knob in enumerate(knobs, 1):
        say(log, f"[search {i}/{len(knobs)}] {knob.describe()}")
        found.append(
            strongest_within_budget(
                trial,
                knob,
                baseline=baseline,
                log=log,
                known=known,
            )
        )
    return found


def _knob(attack: str, option: str, values: Sequence[float], **fixed: Any) -> Knob:
    return Knob(attack, option, tuple(values), MappingProxyType(fixed))


SEARCHES: tuple[Knob, ...] = (
    _knob("ft-large-lr", "lr", (0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.8), epochs=5),
    _knob("ftal", "epochs", (1, 2, 5, 10, 20, 40), lr=0.01),
    _knob("prune", "sparsity", (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)),
    _knob("fine-prune", "fraction", (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)),
    _knob("quantize", "bits", (8, 6, 5, 4, 3, 2, 1)),
    _knob("noise", "sigma", (0.01, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)),
    _knob("smooth", "sigma", (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)),
    _knob("jpeg", "quality", (95, 75, 50, 30, 20, 10, 5, 1)),
    _knob("input-quantize", "bits", (8, 6, 4, 3, 2, 1)),
    _knob("ood-detector", "quantile", (0.999, 0.995, 0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6)),
    _knob("overwrite", "lr", (0.01, 0.03, 0.05, 0.1, 0.2, 0.3), kind="abstract", epochs=5, count=1000),
    _knob("weight-shift", "shift", (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)),
    _knob("regularize", "decay", (0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5)),
    _knob("adv-train", "eps", (0.01, 0.02, 0.03, 0.05, 0.07, 0.1)),
    _knob("distill", "epochs", (20, 10, 5, 3, 2, 1)),  # fewer epochs: less of the teacher, and of its mark
    _knob("launder", "lr", (0.01, 0.02, 0.05, 0.1, 0.2)),
)
"""Every knob of the attack registry that has a strength, over a range from harmless to ruinous."""


__all__ = ["SEARCHES", "Knob", "SearchOutcome", "search_all", "strongest_within_budget"]
