"""The two statistics of the sibling-contrast test, from top-1 answers on the same probes.

Models: the deployed model ``A`` and its siblings ``B_1 .. B_k`` (one recipe, other seeds), and the
suspect ``S``. Every function here takes int64 label tensors of the same length (one entry per probe).

- :func:`rank_test` (model level, no assumption): ``S``'s agreement with each of the ``k + 1`` models on
  the probes where they do not all agree; ``A``'s rank among them. If ``S`` was made independently of
  which model was deployed (the choice was drawn at random before any model was trained), the ``k + 1``
  models are exchangeable with respect to ``S`` and ``A``'s rank is uniform: ``p = rank / (k + 1)``,
  exact, ties counted against the claim. It can never fall below ``1 / (k + 1)``.
- :func:`probe_test` (probe level, one stated assumption): probe ``i`` is compared with sibling
  ``B_(i mod k)``; on the probes where ``A`` and that sibling differ, count those where ``S`` answers as
  ``A`` and those where it answers as the sibling. Probes are drawn independently after ``S`` is fixed,
  so given the models the count of ``A`` sides among the ``n`` decided probes is a sum of independent
  Bernoulli draws, each with ``S``'s own rate ``q_j`` against sibling ``j``; under ``H0: every q_j <=
  1/2 + delta`` it is stochastically at most ``Binomial(n, 1/2 + delta)``, which gives the p-value. A
  model made without ``A`` has no reason to prefer ``A`` to a sibling of the same recipe (they are
  exchangeable when the deployed model is drawn at random), so ``q_j`` is about 1/2; that it stays
  within ``delta`` of it is an assumption, measured (docs/contrast.md) and written into every report.
- :func:`score_test` (probe level, where the suspect's scores can be read): the same pairing and null,
  but on every probe, not only where the answers differ: is the suspect's score vector closer to the
  deployed model's than to the sibling's? Scores are compared as centred log-probabilities (the
  log-softmax of the outputs minus its mean over classes: the logits up to the constant a softmax
  ignores) by the angle between them (cosine similarity), so a suspect's confidence does not count: a
  softmax temperature scales the centred vector and leaves its direction. Equal angles decide nothing.
  (Squared distance, used first, let confidence decide: an under-trained innocent, its scores near
  uniform, sat closer to the least confident of the owner's models on up to 79% of the probes.) A model
  distilled from the deployed model's outputs inherits them; an independent one is as close to a
  sibling as to it, within a margin measured like the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from backmark.errors import BackmarkError


def binomial_tail(k: int, n: int, q: float) -> float:
    """``P[X >= k]`` for ``X ~ Binomial(n, q)``, summed in log space (no overflow for any ``n``)."""
    return min(1.0, math.pow(10.0, log10_binomial_tail(k, n, q)))


def log10_binomial_tail(k: int, n: int, q: float) -> float:
    """``log10 P[X >= k]`` for ``X ~ Binomial(n, q)``: finite where the tail underflows a float (-inf only
    when ``k > n``)."""
    if n < 0 or not 0.0 < q < 1.0:
        raise BackmarkError(f"binomial_tail needs n >= 0 and 0 < q < 1, got n={n}, q={q}")
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    lq, l1q = math.log(q), math.log1p(-q)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lq + (n - i) * l1q
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(0.0, (top + math.log(math.fsum(math.exp(t - top) for t in terms))) / math.log(10))


def _labels(name: str, labels: torch.Tensor, length: int | None) -> torch.Tensor:
    if labels.dtype != torch.int64 or labels.dim() != 1:
        raise BackmarkError(f"{name} must be int64 labels (N,), got {labels.dtype} {tuple(labels.shape)}")
    if length is not None and len(labels) != length:
        raise BackmarkError(f"{name} has {len(labels)} answers for {length} probes")
    return labels


def _check_answers(deployed: torch.Tensor, siblings: torch.Tensor, suspect: torch.Tensor) -> int:
    """The probe count, after checking ``deployed`` (N,), ``siblings`` (k >= 1, N), ``suspect`` (N,)."""
    n = len(_labels("deployed", deployed, None))
    _labels("suspect", suspect, n)
    if siblings.dim() != 2 or siblings.shape[1] != n or siblings.shape[0] < 1:
        raise BackmarkError(f"siblings must be int64 (k >= 1, {n}) answers, got {tuple(siblings.shape)}")
    return n


@dataclass(frozen=True)
class RankEvidence:
    """The model-level rank test: exact, never below ``1 / models``.

    Attributes:
        models: ``k + 1``, the deployed model and its siblings.
        contested: probes on which the ``k + 1`` models do not all answer alike.
        agreement: the suspect's agreement with each model on those probes, the deployed model first.
        rank: how many of the models the suspect agrees with at least as often as with the deployed one
            (the deployed model included; ties count against the claim).
        p_value: ``rank / models``.
    """

    models: int
    contested: int
    agreement: tuple[int, ...]
    rank: int
    p_value: float


def rank_test(deployed: torch.Tensor, siblings: torch.Tensor, suspect: torch.Tensor) -> RankEvidence:
    """:class:`RankEvidence` from int64 answers: ``deployed`` (N,), ``siblings`` (k, N), ``suspect`` (N,)."""
    _check_answers(deployed, siblings, suspect)
    everyone = torch.cat([deployed.unsqueeze(0), siblings])
    contested = (everyone != everyone[:1]).any(dim=0)
    agreement = (everyone[:, contested] == suspect[contested]).sum(dim=1).tolist()
    rank = sum(1 for a in agreement if a >= agreement[0])
    return RankEvidence(
        models=len(agreement),
        contested=int(contested.sum()),
        agreement=tuple(int(a) for a in agreement),
        rank=rank,
        p_value=rank / len(agreement),
    )


@dataclass(frozen=True)
class ProbeEvidence:
    """The probe-level test of ``H0: q <= 1/2 + delta``.

    Attributes:
        probes: probes queried.
        disagreements: probes where the deployed model and the probe's sibling (``i mod k``) differ.
        sides_deployed: of those, probes where the suspect answers as the deployed model.
        sides_siblings: probes where it answers as the sibling (the rest: neither).
        rate: ``sides_deployed / (sides_deployed + sides_siblings)``, the estimate of ``q`` (0.5 if none).
        delta: the margin of the null hypothesis.
        p_value: ``P[Binomial(n, 1/2 + delta) >= sides_deployed]``, ``n`` the decided probes.
        log10_p_value: its log10, finite where the p-value underflows to 0.
        z: the normal score of the same comparison against 1/2 (no margin), for reading at a glance.
    """

    probes: int
    disagreements: int
    sides_deployed: int
    sides_siblings: int
    rate: float
    delta: float
    p_value: float
    log10_p_value: float
    z: float


def check_delta(delta: float) -> None:
    if not 0.0 <= delta < 0.5 or math.isnan(delta):
        raise BackmarkError(f"{{delta}} must lie in [0, 0.5), got {delta}", params=["delta"])


def probe_test(
    deployed: torch.Tensor, siblings: torch.Tensor, suspect: torch.Tensor, *, delta: float
) -> ProbeEvidence:
    """:class:`ProbeEvidence` from int64 answers: ``deployed`` (N,), ``siblings`` (k, N), ``suspect`` (N,)."""
    check_delta(delta)
    n = _check_answers(deployed, siblings, suspect)
    index = torch.arange(n)
    partner = siblings[index % siblings.shape[0], index]  # probe i against sibling i mod k
    differ = partner != deployed
    a = int((suspect[differ] == deployed[differ]).sum())
    c = int((suspect[differ] == partner[differ]).sum())
    return _evidence(n, int(differ.sum()), a, c, delta)


def _evidence(probes: int, disagreements: int, a: int, c: int, delta: float) -> ProbeEvidence:
    """:class:`ProbeEvidence` from ``a`` probes decided for the deployed model and ``c`` for the sibling:
    the rate, the binomial p-value at ``1/2 + delta`` (1 with none decided) and the z-score."""
    decided = a + c
    return ProbeEvidence(
        probes=probes,
        disagreements=disagreements,
        sides_deployed=a,
        sides_siblings=c,
        rate=a / decided if decided else 0.5,
        delta=delta,
        p_value=binomial_tail(a, decided, 0.5 + delta) if decided else 1.0,
        log10_p_value=log10_binomial_tail(a, decided, 0.5 + delta) if decided else 0.0,
        z=(a - c) / math.sqrt(decided) if decided else 0.0,
    )


def centred_log_scores(scores: torch.Tensor) -> torch.Tensor:
    """The log-softmax of float (..., K) outputs minus its mean over the K classes."""
    logp = torch.log_softmax(scores.double(), dim=-1)
    return logp - logp.mean(dim=-1, keepdim=True)


def _check_scores(deployed: torch.Tensor, siblings: torch.Tensor, suspect: torch.Tensor) -> int:
    """The probe count, after checking ``deployed`` (N, K), ``siblings`` (k, N, K), ``suspect`` (N, K)."""
    if not deployed.is_floating_point() or deployed.dim() != 2:
        raise BackmarkError(
            f"deployed scores must be float (N, K), got {deployed.dtype} {tuple(deployed.shape)}"
        )
    n, k = deployed.shape
    if siblings.dim() != 3 or siblings.shape[0] < 1 or siblings.shape[1:] != (n, k):
        raise BackmarkError(f"sibling scores must be float (k >= 1, {n}, {k}), got {tuple(siblings.shape)}")
    if suspect.shape != (n, k) or not suspect.is_floating_point():
        raise BackmarkError(
            f"the suspect gave {tuple(suspect.shape)} scores for {n} probes of {k} classes; "
            "check that it answers the owner's task"
        )
    if not (
        torch.isfinite(suspect).all() and torch.isfinite(deployed).all() and torch.isfinite(siblings).all()
    ):
        raise BackmarkError("the scores hold NaN or infinite values; the suspect's outputs must be finite")
    return n


def score_test(
    deployed: torch.Tensor, siblings: torch.Tensor, suspect: torch.Tensor, *, delta: float
) -> ProbeEvidence:
    """:class:`ProbeEvidence` from float scores: ``deployed`` (N, K), ``siblings`` (k, N, K), ``suspect``
    (N, K). Probe ``i`` is compared with sibling ``i mod k``; ``disagreements`` counts the probes where
    the two owner's models' scores differ at all, ``sides_deployed`` those where the suspect's point
    closer to the deployed model's (a larger cosine similarity of the centred log-probabilities),
    ``sides_siblings`` closer to the sibling's. A suspect whose scores are uniform decides nothing."""
    check_delta(delta)
    n = _check_scores(deployed, siblings, suspect)
    index = torch.arange(n)
    a_c = centred_log_scores(deployed)
    b_c = centred_log_scores(siblings[index % siblings.shape[0], index])
    s_c = centred_log_scores(suspect)
    to_a = torch.nn.functional.cosine_similarity(s_c, a_c, dim=1)
    to_b = torch.nn.functional.cosine_similarity(s_c, b_c, dim=1)
    a = int((to_a > to_b).sum())
    c = int((to_b > to_a).sum())
    return _evidence(n, int((a_c != b_c).any(dim=1).sum()), a, c, delta)
