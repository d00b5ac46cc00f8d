"""The weight-lineage test: match two models' hidden units layer by layer and test the matching.

Each group of hidden units (:mod:`backmark.lineage.plan`) is matched twice, by the Hungarian method on
cosine similarity (:mod:`backmark.lineage.assign`):

- by **incoming** weights, the rows of the layers that write the units, with each row's inputs put in
  the owner's order by the matching of the group they come from (the model's input channels are fixed,
  so the first layer needs none): a chain from the input end;
- by **outgoing** weights, the columns of the layers that read the units, described so that the
  reading layer's own unit order does not matter (the Gram matrix over its kernel positions, or the
  quantiles of the column; the output layer's columns as they are, since classes are fixed).

Two statistics per group, each combined over the groups by Fisher's method (docs/lineage.md):

- **exact**: how many owner units the incoming matching pairs with the suspect unit of the same index.
  Under the null the suspect's unit order is exchangeable, the matching is uniformly random and
  independent across groups, and :func:`~backmark.lineage.stats.hits_tail` gives the exact tail. A
  permuted suspect defeats it;
- **robust**: how many owner units the two matchings pair alike. Invariant to the suspect's unit order,
  but independently trained models do learn some similar units, which both matchings then pair alike
  (about 1 in 10 here), so nothing exact is known about its law. Its p-value is the tail of
  Binomial(units, ``margin``): valid only as long as an innocent pair's units agree independently with
  probability at most ``margin``, an assumption whose calibration is measured on innocent pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from backmark.constants import DEFAULT_ALPHA
from backmark.errors import BackmarkError
from backmark.lineage.assign import Indices, Matrix, match
from backmark.lineage.plan import Group, Plan, PlanError, trace_plan
from backmark.lineage.result import TESTS, LayerResult, LineageResult, Test
from backmark.lineage.stats import binomial_tail, fisher_log10, hits_tail, log10, to_float
from backmark.verify.stats import check_alpha

Weights = dict[str, npt.NDArray[np.float64]]
# The robust test's margin: the share of units that the two matchings of an innocent pair may pair alike
# (measured in docs/lineage.md: innocent pairs stayed well below it; derived models are far above).
DEFAULT_MARGIN = 0.25
_QUANTILES = np.linspace(0.0, 1.0, 33)  # describe a column of a linear reader by 33 quantiles


def _weights(model: nn.Module | Mapping[str, torch.Tensor]) -> Weights:
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return {k: v.detach().cpu().double().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _units(w: npt.NDArray[np.float64], block: int) -> npt.NDArray[np.float64]:
    """A weight as (units out, units in, positions per input unit)."""
    return w.reshape(w.shape[0], -1, block if w.ndim == 2 else int(np.prod(w.shape[2:])))


def _cosine(a: Matrix, b: Matrix) -> Matrix:
    """Cosine similarity of every row of ``a`` with every row of ``b`` (zero rows: 0)."""
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
    sim: Matrix = an @ bn.T
    return sim


def _weight(
    w: Weights, layer: str, which: str, like: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.float64]:
    """``layer``'s weight; the suspect's must have the owner's kind (``like``: same rank and kernel)."""
    got = w.get(f"{layer}.weight")
    if got is None:
        raise PlanError(f"the {which} model has no weight {layer}.weight; the architectures differ")
    if like is not None and (got.ndim != like.ndim or got.shape[2:] != like.shape[2:]):
        raise PlanError(
            f"{layer}.weight has shape {list(got.shape)} in the suspect and {list(like.shape)} in the "
            "owner's model: only the numbers of units may differ"
        )
    return got


def _incoming(group: Group, a: Weights, b: Weights, matches: dict[int, Indices]) -> Matrix | None:
    """Mean cosine similarity (owner units x suspect units) over the usable producers of ``group``."""
    sims = []
    for prod in group.producers:
        if prod.input is not None and prod.input not in matches:
            continue  # its inputs are not matched yet (a residual stream's later writers)
        raw = _weight(a, prod.layer, "owner")
        wa = _units(raw, prod.block)
        wb = _units(_weight(b, prod.layer, "suspect", raw), prod.block)
        if wa.shape[2] != wb.shape[2]:
            raise PlanError(f"{prod.layer}: kernels of {wa.shape[2]} and {wb.shape[2]} positions cannot pair")
        if prod.input is None:
            if wa.shape[1] != wb.shape[1]:
                raise PlanError(
                    f"{prod.layer}: the models take {wa.shape[1]} and {wb.shape[1]} input channels"
                )
            aligned = wb
        else:
            into = matches[prod.input]  # owner input unit -> suspect input unit
            aligned = np.zeros((wb.shape[0], wa.shape[1], wb.shape[2]))
            ok = into >= 0
            aligned[:, ok] = wb[:, into[ok]]
        sims.append(_cosine(wa.reshape(len(wa), -1), aligned.reshape(len(aligned), -1)))
    return np.mean(sims, axis=0) if sims else None


def _describe(w: npt.NDArray[np.float64], fixed_rows: bool) -> Matrix:
    """One row per unit (axis 1 of ``w``: readers x units x positions), unchanged by the readers' order."""
    cols = np.moveaxis(w, 1, 0)  # units x readers x positions
    if fixed_rows:
        desc = cols.reshape(len(cols), -1)
    elif cols.shape[2] > 1:
        desc = np.einsum("urp,urq->upq", cols, cols).reshape(len(cols), -1)  # Gram over positions
    else:
        desc = np.quantile(cols[:, :, 0], _QUANTILES, axis=1).T
    desc = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-30)  # scale-free ...
    centred: Matrix = desc - desc.mean(axis=0, keepdims=True)  # ... and what all units share removed
    return centred


def _outgoing(group: Group, a: Weights, b: Weights) -> Matrix | None:
    sims = []
    for cons in group.consumers:
        raw = _weight(a, cons.layer, "owner")
        wa = _units(raw, cons.block)
        wb = _units(_weight(b, cons.layer, "suspect", raw), cons.block)
        fixed = cons.output is None
        if wa.shape[2] != wb.shape[2] or (fixed and wa.shape[0] != wb.shape[0]):
            continue  # another kernel, or another class count (a new head): nothing to compare
        sims.append(_cosine(_describe(wa, fixed), _describe(wb, fixed)))
    return np.mean(sims, axis=0) if sims else None


def _layer(
    group: Group, sim_in: Matrix, sim_out: Matrix | None, margin: Fraction
) -> tuple[LayerResult, Indices]:
    n_a, n_b = sim_in.shape
    m_in = match(sim_in)
    idx = np.arange(n_a)
    paired = m_in >= 0
    hits = int(np.sum(m_in == idx))
    eligible = int(np.sum(paired & (idx < n_b)))
    exact = log10(hits_tail(hits, eligible=eligible, targets=n_b))
    cosine = float(sim_in[idx[paired], m_in[paired]].mean()) if paired.any() else 0.0
    if sim_out is not None:
        m_out = match(sim_out)
        both = paired & (m_out >= 0)
        agree = int(np.sum(both & (m_in == m_out)))
        agree_eligible = int(np.sum(both))
        robust = log10(binomial_tail(agree, n=agree_eligible, q=margin))
    else:
        m_out, agree, agree_eligible, robust = np.full(n_a, -1), 0, 0, 0.0
    result = LayerResult(
        name=group.name,
        owner_units=n_a,
        suspect_units=n_b,
        matched=tuple(int(v) for v in m_in),
        matched_out=tuple(int(v) for v in m_out),
        cosine=round(cosine, 6),
        hits=hits,
        eligible=eligible,
        exact_p=to_float(exact),
        exact_log10_p=exact,
        agreements=agree,
        agreement_eligible=agree_eligible,
        robust_p=to_float(robust),
        robust_log10_p=robust,
    )
    return result, m_in


def compare_weights(
    plan: Plan, owner: Weights, suspect: Weights, *, margin: float = DEFAULT_MARGIN
) -> tuple[LayerResult, ...]:
    """Match every group of ``plan`` (owner's weights against the suspect's) in chain order."""
    q = Fraction(str(margin))
    matches: dict[int, Indices] = {}
    results: dict[int, LayerResult] = {}
    pending = list(range(len(plan.groups)))
    while pending:
        for g in pending:
            sim_in = _incoming(plan.groups[g], owner, suspect, matches)
            if sim_in is not None:
                break
        else:
            raise PlanError(f"no chain of layers from the input reaches {plan.groups[pending[0]].name}")
        sim_out = _outgoing(plan.groups[g], owner, suspect)
        results[g], matches[g] = _layer(plan.groups[g], sim_in, sim_out, q)
        pending.remove(g)
    return tuple(results[g] for g in range(len(plan.groups)))


def lineage_test(
    *,
    owner: nn.Module,
    suspect: nn.Module | Mapping[str, torch.Tensor],
    input_shape: tuple[int, ...],
    test: Test = "either",
    alpha: float = DEFAULT_ALPHA,
    margin: float = DEFAULT_MARGIN,
) -> LineageResult:
    """Test whether ``suspect``'s weights descend from ``owner``'s (docs/lineage.md).

    ``input_shape`` is one input without the batch dimension, e.g. (1, 28, 28): the owner's model is
    traced on it to find its layers. The suspect (a model, or its weights by parameter name) must have
    the owner's layers (names and kernels; the numbers of units may differ). ``test`` picks the
    decision: ``exact`` (exact under the stated null, blind to permuted units), ``robust`` (sees
    permuted units, calibrated by measurement only) or ``either`` (both, the smaller p-value
    doubled); ``margin`` is the robust test's assumed largest share of agreeing units for an innocent
    pair. Neither model is changed. Raises :class:`~backmark.errors.BackmarkError` (one line) for
    models that cannot be paired.
    """
    check_alpha(alpha)
    if test not in TESTS:
        raise BackmarkError(f"{{test}} must be one of {', '.join(TESTS)}, got {test!r}", params=["test"])
    if not 0.0 < margin < 1.0:
        raise BackmarkError(f"{{margin}} must lie strictly between 0 and 1, got {margin}", params=["margin"])
    with torch.no_grad():
        plan = trace_plan(owner, input_shape=input_shape)
        layers = compare_weights(plan, _weights(owner), _weights(suspect), margin=margin)
    exact = fisher_log10([layer.exact_log10_p for layer in layers])
    robust = fisher_log10([layer.robust_log10_p for layer in layers if layer.agreement_eligible])
    chosen = {"exact": exact, "robust": robust, "either": min(0.0, np.log10(2) + min(exact, robust))}[test]
    return LineageResult(
        test=test,
        alpha=alpha,
        margin=margin,
        p_value=to_float(chosen),
        log10_p_value=float(chosen),
        verified=bool(chosen <= np.log10(alpha)),
        exact_p=to_float(exact),
        exact_log10_p=exact,
        robust_p=to_float(robust),
        robust_log10_p=robust,
        layers=layers,
    )
