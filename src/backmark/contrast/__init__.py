"""The sibling-contrast test: black-box evidence that a suspect was copied from the deployed model.

A model's seed-specific behaviour (the inputs on which it answers differently from an equally good model
trained on the same data with another seed) is what an extracted or distilled copy inherits and an
independent model does not. The owner trains ``k + 1`` models of one recipe and deploys one chosen by
committed randomness (:mod:`backmark.contrast.siblings`); a verifier draws probes from a nonce fixed after
the suspect is (:mod:`backmark.contrast.probes`), queries the suspect's top-1 answers and counts which
model it sides with (:mod:`backmark.contrast.stats`); where the suspect's scores can be read (a local
model), it also counts whether they are closer to the deployed model's than to a sibling's, which a
distilled copy inherits. See docs/contrast.md for the protocol, the p-values, their assumptions and
measurements.

Example (``marked.pt`` trained with ``--siblings K``, ``suspect`` any model or target)::

    sibs = load_siblings("marked.pt")                       # marked.pt + marked.pt.siblings/
    result = contrast(suspect, sibs, pool=probe_pool(data), nonce=new_challenge().nonce)
    result.verified, result.p_value, result.rank.p_value
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from backmark.constants import CONTRAST_DELTA, CONTRAST_POOLS, CONTRAST_PROBES, CONTRAST_SCORE_DELTA
from backmark.contrast.probes import PROBE_KINDS, ProbeDraw, ProbeKind, draw, draw_probes
from backmark.contrast.siblings import (
    SiblingPlan,
    SiblingRecord,
    Siblings,
    load_siblings,
    plan_siblings,
    siblings_folder,
    weights_digest,
    write_siblings,
)
from backmark.contrast.stats import (
    ProbeEvidence,
    RankEvidence,
    binomial_tail,
    check_delta,
    probe_test,
    rank_test,
    score_test,
)
from backmark.data.dataset import ImageDataset
from backmark.errors import BackmarkError
from backmark.targets import ModuleTarget, ScoredTarget, Target
from backmark.verify import query_labels
from backmark.verify.decision import Decision, Piece, decide_any, piece_level
from backmark.verify.stats import check_alpha

DEFAULT_PROBES = CONTRAST_PROBES
DEFAULT_KIND: ProbeKind = "natural"  # constants.CONTRAST_KINDS[0] (docs/contrast.md, "Pool and draws")
# The margin of the probe-level null: models made without the deployed model side with it on at most
# 1/2 + DELTA of the decided probes. Chosen from independent models, taken against every choice of the
# deployed model, before any suspect was measured (docs/contrast.md, "Every choice of the deployed model").
DEFAULT_DELTA = CONTRAST_DELTA
# The margin of the score test (the suspect's scores closer to the deployed model's than to the sibling's),
# chosen the same way from the same innocents (docs/contrast.md, "Scores").
DEFAULT_SCORE_DELTA = CONTRAST_SCORE_DELTA
DEFAULT_ALPHA = 1e-6
QUERY_BATCH = 500
QUERIED_TAG = b"queried/"  # the queried probes' nonce: this tag and the challenge's

ASSUMPTION = (
    "probe-level p-value: exact given the models for probes drawn after the suspect was fixed, under the "
    "assumption that a model made without the deployed model answers as it (rather than as the probe's "
    "sibling) on at most 1/2 + delta of the probes where the two differ (a rate over the probe images' "
    "pool, from which probes are drawn with replacement), measured for independent models against every "
    "choice of the deployed model (the largest 0.601 of 1,200; delta was set above it), not for one trained "
    "with the owner's own recipe, data and key (docs/contrast.md); rank p-value: "
    "exact without that assumption if the deployed model was chosen at random among the k + 1 before the "
    "suspect was made (the registered sibling record shows when), but never below 1/(k + 1)"
)
SCORE_ASSUMPTION = (
    "score p-value (where the suspect's scores could be read): exact given the models for probes drawn "
    "after the suspect was fixed, under the assumption that a model made without the deployed model has "
    "scores closer to the deployed model's than to the probe's sibling's on at most 1/2 + delta of the "
    "probes (a rate over the pool; scores compared by the angle between centred log-probabilities, so "
    "confidence does not count), measured for the same "
    "independent models against every choice of the deployed model (the largest 0.655 of 1,200; delta "
    "was set above it)"
)
COMBINED_ASSUMPTION = (
    "the contrast p-value is the smallest of these {n} tests' p-values times {n} (Bonferroni)"
)
QUERIED_ASSUMPTION = (
    "queried p-value (where the owner gave the images its model was queried with): the answers' test and "
    "margin on probes drawn from those images (chosen, by whoever sent them, without the suspect's answers), "
    "exact given the models under the assumption that a model "
    "made without the deployed model sides with it on at most 1/2 + delta of the ones where the two differ, "
    "measured for independent models trained on those very images with their true labels and on others, "
    'against every choice of the deployed model (docs/contrast.md, "The images the thief queried")'
)


@dataclass(frozen=True)
class ContrastResult:
    """The contrast test's decision and both of its figures.

    Attributes:
        verified: ``p_value`` is at most ``alpha`` (the claim this test makes).
        p_value: the probe-level p-value (:class:`ProbeEvidence`), under the assumption in ``assumption``;
            where the score test or the queried test ran too, the smallest of the tests' p-values times
            their number (each test at alpha / n).
        alpha: the significance level of the decision.
        probe: the probe-level counts.
        rank: the model-level rank test (exact, no margin assumed; reported beside, not decided on).
        kind: the probe kind; ``nonce``: hex of the nonce the probes were drawn from.
        queries: the suspect's queries (distinct probe inputs: a natural or shifted input drawn twice is
            asked once).
        scores: the score test (:func:`score_test`) where the suspect's scores could be read (a local
            model), else None; with it, ``p_value`` is the smallest of the tests' p-values times their
            number.
        queried: the answers' test on probes drawn from the images the deployed model was queried with
            (:func:`prepare`'s ``queried``), else None: a copy trained on a thief's queries learned the
            deployed model's answers on exactly those images. With it, ``p_value`` is the smallest of the
            tests' p-values times their number.
        sibling_rates: each sibling's own rate on the same draws, taken as a suspect against the deployed
            model and the other siblings (:func:`sibling_tests`; empty with one sibling): the innocents
            closest to the deployed model, measured before the suspect is asked. One above 1/2 + delta
            means the margin does not hold for a model of the owner's own recipe, data and key.
        assumption: what the p-values assume, in words (every report prints it).
    """

    verified: bool
    p_value: float
    alpha: float
    probe: ProbeEvidence
    rank: RankEvidence
    kind: str
    nonce: str
    queries: int
    sibling_rates: tuple[float, ...] = ()
    assumption: str = ASSUMPTION
    scores: ProbeEvidence | None = None
    queried: ProbeEvidence | None = None

    @property
    def counts(self) -> tuple[tuple[str, ProbeEvidence], ...]:
        """The counts that ran, by name: the answers', then the scores' and the queried images' where
        they ran; :attr:`p_value` is the smallest of theirs times their number."""
        return _counts(self.probe, self.scores, self.queried)

    @property
    def log10(self) -> float:
        """log10 of :attr:`p_value`, finite where it underflows to 0."""
        return _combined(self.alpha, self.counts).log10_p_value

    @property
    def margin_holds_for_siblings(self) -> bool:
        """No sibling, taken as a suspect, sides with the deployed model above 1/2 + delta."""
        return all(r <= 0.5 + self.probe.delta for r in self.sibling_rates)

    def probe_figures(self) -> dict[str, Any]:
        """The probe-level test's counts, JSON-ready (its p-value included), and the score test's under
        ``scores`` (null where the suspect's scores could not be read)."""
        return {
            "p_value": self.probe.p_value,
            "kind": self.kind,
            "queries": self.queries,
            **asdict(self.probe),
            "sibling_rates": list(self.sibling_rates),
            "margin_holds_for_siblings": self.margin_holds_for_siblings,
            "scores": None if self.scores is None else asdict(self.scores),
            "queried": None if self.queried is None else asdict(self.queried),
        }


POOLS = CONTRAST_POOLS  # the first is the default


def probe_pool(data: ImageDataset, pool: str = POOLS[0]) -> torch.Tensor:
    """The natural images probes are drawn from: ``test`` the dataset's test split (the default: images
    the owner's models never trained on; docs/contrast.md measures that the training images dilute the
    test), or ``all`` its training and test images. uint8 (M, C, H, W)."""
    if pool == "test":
        return data.test_x
    if pool == "all":
        return torch.cat([data.train_x, data.test_x])
    raise BackmarkError(f"the probe pool must be one of {', '.join(POOLS)}, got {pool!r}")


def answers(model: nn.Module | Target, images: torch.Tensor, *, num_classes: int | None) -> torch.Tensor:
    """Top-1 answers of ``model`` for uint8 (N, C, H, W) ``images``, in batches: int64 (N,)."""
    target = ModuleTarget(model) if isinstance(model, nn.Module) else model
    out = [
        query_labels(
            target,
            images[i : i + QUERY_BATCH].float().div(255.0),
            num_classes=num_classes,
            what="the contrast probes",
            noun="probes",
        )
        for i in range(0, len(images), QUERY_BATCH)
    ]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


@dataclass(frozen=True, eq=False)
class Prepared:
    """Probes drawn and the owner's models' answers on them: ready to test any number of suspects.

    ``probes``: the N draws (distinct images and an index, :class:`ProbeDraw`); ``deployed``: the deployed
    model's answers per draw (N,); ``others``: the siblings' (k, N); ``kind``, ``nonce`` (hex): how the
    probes were drawn; ``num_classes``: the class count every answer must lie within;
    ``deployed_scores`` (M, K) and ``other_scores`` (k, M, K): the models' outputs on the M distinct
    probe images (None: the score test is not run); ``queried``: the same, drawn from the images the
    deployed model was queried with (None: that test is not run).
    """

    probes: ProbeDraw
    deployed: torch.Tensor
    others: torch.Tensor
    kind: str
    nonce: str
    num_classes: int
    deployed_scores: torch.Tensor | None = None
    other_scores: torch.Tensor | None = None
    queried: Prepared | None = None


def prepare(
    deployed: nn.Module,
    siblings: Sequence[nn.Module],
    *,
    pool: torch.Tensor,
    nonce: bytes,
    num_classes: int,
    probes: int = DEFAULT_PROBES,
    kind: str = DEFAULT_KIND,
    queried: torch.Tensor | None = None,
) -> Prepared:
    """Draw ``probes`` probes of ``kind`` from ``pool`` (uint8 (M, C, H, W) natural images of the task)
    and ``nonce``, and query the deployed model and its ``siblings`` (at least one) on them.

    ``queried``: uint8 (Q, C, H, W) images the deployed model was queried with (an owner's request
    log): ``probes`` natural probes are also drawn from them (from ``nonce`` under another tag), for the
    answers' test on the images a thief's copy was trained on (docs/contrast.md, "The images the thief
    queried")."""
    if not siblings:
        raise BackmarkError("the contrast test needs at least one sibling of the deployed model")
    if queried is not None and tuple(queried.shape[1:]) != tuple(pool.shape[1:]):
        raise BackmarkError(
            f"the queried images are {tuple(queried.shape[1:])} but the probe images are "
            f"{tuple(pool.shape[1:])}; give the images the deployed model was queried with"
        )
    if queried is not None and len(queried) == 0:
        raise BackmarkError(
            "no queried images were given; give the images the deployed model was queried with"
        )
    drawn = draw(pool, kind=kind, count=probes, nonce=nonce)
    outputs = [_scores(m, drawn.images) for m in (deployed, *siblings)]
    comparable = all(bool(torch.isfinite(o).all()) for o in outputs)  # else the score test is not run
    return Prepared(
        probes=drawn,
        deployed=_top1(outputs[0], drawn, num_classes, who="the deployed model"),
        others=torch.stack([_top1(o, drawn, num_classes, who="a sibling") for o in outputs[1:]]),
        kind=kind,
        nonce=nonce.hex(),
        num_classes=num_classes,
        deployed_scores=outputs[0] if comparable else None,
        other_scores=torch.stack(outputs[1:]) if comparable else None,
        queried=None
        if queried is None
        else prepare(
            deployed,
            siblings,
            pool=queried,
            nonce=QUERIED_TAG + nonce,
            num_classes=num_classes,
            probes=probes,
        ),
    )


def _scores(model: nn.Module | ScoredTarget, images: torch.Tensor) -> torch.Tensor:
    """``model``'s outputs on uint8 ``images``, in batches: float (M, K)."""
    target = ModuleTarget(model) if isinstance(model, nn.Module) else model
    out = [
        target.scores(images[i : i + QUERY_BATCH].float().div(255.0))
        for i in range(0, len(images), QUERY_BATCH)
    ]
    return torch.cat(out) if out else torch.empty(0)


def _top1(outputs: torch.Tensor, drawn: ProbeDraw, num_classes: int, *, who: str) -> torch.Tensor:
    """The top-1 answer per draw from ``who``'s outputs on the distinct probe images, after checking
    they are one score per class for each image."""
    if outputs.shape != (len(drawn.images), num_classes):
        raise BackmarkError(
            f"{who} gave {tuple(outputs.shape)} outputs for {len(drawn.images)} probes, not one score per "
            f"class of the owner's {num_classes}; check that it answers the owner's task"
        )
    return outputs.argmax(dim=1)[drawn.index]


def decide(
    suspect: nn.Module | Target,
    prepared: Prepared,
    *,
    delta: float = DEFAULT_DELTA,
    alpha: float = DEFAULT_ALPHA,
    score_delta: float = DEFAULT_SCORE_DELTA,
) -> ContrastResult:
    """Query ``suspect`` on the prepared probes and decide at ``alpha`` (margin ``delta``). Where its
    scores can be read (an ``nn.Module`` or a :class:`~backmark.targets.ScoredTarget`), the score test
    (margin ``score_delta``) runs beside the probe test, and where ``prepared`` holds queried images the
    same probe test runs on them too: each of the n counts at ``alpha / n``."""
    check_alpha(alpha)
    check_delta(delta)
    check_delta(score_delta)
    drawn = prepared.probes
    outputs = None
    if isinstance(suspect, nn.Module | ScoredTarget) and prepared.deployed_scores is not None:
        outputs = _scores(suspect, drawn.images)
        seen = _top1(outputs, drawn, prepared.num_classes, who="the suspect")
        if not torch.isfinite(outputs).all():
            outputs = None  # a defence that rules a class out with an infinite score: answers only
    else:
        seen = _answers_per_draw(suspect, drawn, prepared.num_classes)
    probe = probe_test(prepared.deployed, prepared.others, seen, delta=delta)
    queried = None
    if prepared.queried is not None:
        q = prepared.queried
        queried = probe_test(
            q.deployed, q.others, _answers_per_draw(suspect, q.probes, q.num_classes), delta=delta
        )
    scores = None
    if outputs is not None and prepared.other_scores is not None and prepared.deployed_scores is not None:
        scores = score_test(
            prepared.deployed_scores[drawn.index],
            prepared.other_scores[:, drawn.index],
            outputs[drawn.index],
            delta=score_delta,
        )
    counts = _counts(probe, scores, queried)
    claim = _combined(alpha, counts)
    return ContrastResult(
        verified=claim.verified,
        p_value=claim.p_value,
        alpha=alpha,
        probe=probe,
        rank=rank_test(prepared.deployed, prepared.others, seen),
        kind=prepared.kind,
        nonce=prepared.nonce,
        queries=len(prepared.probes.images),
        sibling_rates=tuple(e.rate for e in sibling_tests(prepared.deployed, prepared.others)),
        assumption="; ".join(
            [ASSUMPTION]
            + ([] if scores is None else [SCORE_ASSUMPTION])
            + ([] if queried is None else [QUERIED_ASSUMPTION])
            + ([] if len(counts) == 1 else [COMBINED_ASSUMPTION.format(n=len(counts))])
        ),
        scores=scores,
        queried=queried,
    )


def _counts(
    probe: ProbeEvidence, scores: ProbeEvidence | None, queried: ProbeEvidence | None
) -> tuple[tuple[str, ProbeEvidence], ...]:
    """The counts that ran, by name (:attr:`ContrastResult.counts`)."""
    named = (("answers", probe), ("scores", scores), ("queried", queried))
    return tuple((name, e) for name, e in named if e is not None)


def _combined(alpha: float, counts: tuple[tuple[str, ProbeEvidence], ...]) -> Decision:
    """The ``counts`` as one claim at ``alpha``, each at alpha / k
    (:func:`backmark.verify.decision.decide_any`)."""
    level = piece_level(alpha, len(counts))
    return decide_any(
        alpha,
        [Piece(name, e.p_value, e.p_value <= level, log10_p_value=e.log10_p_value) for name, e in counts],
    )


def sibling_tests(
    deployed: torch.Tensor, others: torch.Tensor, *, delta: float = 0.0
) -> tuple[ProbeEvidence, ...]:
    """Each sibling taken as a suspect: the probe test (margin ``delta``) of sibling i's answers against
    the deployed model's ``deployed`` (N,) and the other k - 1 siblings' (``others`` is (k, N)), with the
    test's own pairing among them; empty when k < 2. docs/contrast.md measured siblings as suspects up
    to 0.591, above the margins measured from independent models before 0.11; today's is 0.13."""
    k = len(others)
    if k < 2:
        return ()
    return tuple(
        probe_test(deployed, torch.cat([others[:i], others[i + 1 :]]), others[i], delta=delta)
        for i in range(k)
    )


def _answers_per_draw(model: nn.Module | Target, drawn: ProbeDraw, num_classes: int) -> torch.Tensor:
    """``model``'s top-1 answer on every draw, each distinct image asked once: int64 (N,)."""
    return answers(model, drawn.images, num_classes=num_classes)[drawn.index]


def contrast(
    suspect: nn.Module | Target,
    siblings: Siblings,
    *,
    pool: torch.Tensor,
    nonce: bytes,
    probes: int = DEFAULT_PROBES,
    kind: str = DEFAULT_KIND,
    delta: float = DEFAULT_DELTA,
    alpha: float = DEFAULT_ALPHA,
    score_delta: float = DEFAULT_SCORE_DELTA,
    queried: torch.Tensor | None = None,
) -> ContrastResult:
    """Query the suspect on ``probes`` probes drawn from ``pool`` and ``nonce``; decide at ``alpha``
    (with the score test beside where the suspect's scores can be read: :func:`decide`).

    ``pool``: uint8 (M, C, H, W) natural images of the task (e.g. the test split); ``queried``: the
    images the deployed model was queried with, where the owner logged them (:func:`prepare`). Every
    argument is checked before the suspect is queried.
    """
    check_alpha(alpha)
    check_delta(delta)
    shape = siblings.info.input_shape
    if tuple(pool.shape[1:]) != shape:
        raise BackmarkError(
            f"the probe images are {tuple(pool.shape[1:])} but the models take {shape}; "
            "give data of the models' task"
        )
    prepared = prepare(
        siblings.deployed,
        siblings.siblings,
        pool=pool,
        nonce=nonce,
        num_classes=siblings.info.num_classes,
        probes=probes,
        kind=kind,
        queried=queried,
    )
    return decide(suspect, prepared, delta=delta, alpha=alpha, score_delta=score_delta)


__all__ = [
    "ASSUMPTION",
    "COMBINED_ASSUMPTION",
    "DEFAULT_ALPHA",
    "DEFAULT_DELTA",
    "DEFAULT_KIND",
    "DEFAULT_PROBES",
    "DEFAULT_SCORE_DELTA",
    "POOLS",
    "PROBE_KINDS",
    "QUERIED_ASSUMPTION",
    "SCORE_ASSUMPTION",
    "ContrastResult",
    "Prepared",
    "ProbeDraw",
    "ProbeEvidence",
    "RankEvidence",
    "SiblingPlan",
    "SiblingRecord",
    "Siblings",
    "answers",
    "binomial_tail",
    "contrast",
    "decide",
    "draw",
    "draw_probes",
    "load_siblings",
    "plan_siblings",
    "prepare",
    "probe_pool",
    "probe_test",
    "rank_test",
    "score_test",
    "sibling_tests",
    "siblings_folder",
    "weights_digest",
    "write_siblings",
]
