"""What a thief can do to the units without changing the function: permute them, rescale them.

Both return a new model and leave the given one as it was. They are the lineage test's adversaries
(docs/lineage.md), kept in the library so that tests and benchmarks apply exactly the same changes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from backmark.lineage.plan import Plan


def _owned_axes(plan: Plan, g: int) -> list[tuple[str, int, int]]:
    """Every tensor axis that indexes the units of group ``g``: (tensor name, axis, positions per unit)."""
    group = plan.groups[g]
    axes = [(f"{p.layer}.weight", 0, 1) for p in group.producers]
    axes += [(name, 0, 1) for name in group.unit_tensors]
    axes += [(f"{c.layer}.weight", 1, c.block) for c in group.consumers]
    return axes


def _apply(
    t: torch.Tensor, axis: int, block: int, index: torch.Tensor, scale: torch.Tensor | None
) -> torch.Tensor:
    """``t`` with its units on ``axis`` (``block`` columns each on a 2-d weight) reordered by ``index``
    and, if given, each multiplied by ``scale`` (after reordering)."""
    if t.dim() == 2 and axis == 1 and block > 1:
        view = t.reshape(t.shape[0], -1, block)
        out = view[:, index] if scale is None else view[:, index] * scale[None, :, None]
        return out.reshape(t.shape)
    moved = t.movedim(axis, 0)[index]
    if scale is not None:
        moved = moved * scale.reshape(-1, *([1] * (moved.dim() - 1)))
    return moved.movedim(0, axis)


def permute_units(model: nn.Module, plan: Plan, *, seed: int) -> nn.Module:
    """A copy of ``model`` with every group's units in a random order (seeded): the same function."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for g, group in enumerate(plan.groups):
        order = torch.randperm(group.size, generator=gen)
        for name, axis, block in _owned_axes(plan, g):
            if name in state and state[name].dim() > 0:
                state[name] = _apply(state[name], axis, block, order, None)
    out = copy.deepcopy(model)
    out.load_state_dict(state)
    return out


def rescale_units(model: nn.Module, plan: Plan, *, seed: int, spread: float = 4.0) -> nn.Module:
    """A copy of ``model`` whose units are rescaled across their activation: each unit's outgoing weights
    multiplied by ``c`` and what writes it (weights and biases, or batch norm's scale and shift) by
    ``1/c``, with ``c`` log-uniform in ``[1/spread, spread]`` (seeded). A ReLU commutes with a positive
    scale, so the function is the same. Groups tied by residual additions are left alone (every writer
    would have to move together); batch-normalised units are rescaled through batch norm's affine."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for group in plan.groups:
        if len(group.producers) != 1:
            continue
        c = torch.exp((torch.rand(group.size, generator=gen) * 2 - 1) * torch.log(torch.tensor(spread)))
        ident = torch.arange(group.size)
        layer = group.producers[0].layer
        own = [f"{layer}.weight", *(n for n in group.unit_tensors if n.startswith(f"{layer}."))]
        norm = [n for n in group.unit_tensors if n not in own and n.endswith((".weight", ".bias"))]
        writers = norm if norm else own
        for name in writers:  # batch norm's affine, else the producer itself and its bias
            state[name] = _apply(state[name], 0, 1, ident, 1 / c)
        for cons in group.consumers:
            name = f"{cons.layer}.weight"
            state[name] = _apply(state[name], 1, cons.block, ident, c)
    out = copy.deepcopy(model)
    out.load_state_dict(state)
    return out
