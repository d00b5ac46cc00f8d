"""Which weights hold which hidden units: a model's layers traced into groups of exchangeable units.

A *group* is a set of hidden units (channels of a convolution, outputs of a linear layer) that training
treats alike: permuting them, together with every weight that reads or writes them, leaves the function
unchanged. Residual additions tie the units of their operands into one group (a ResNet stage's stream).
The model's input channels and its output classes are the *fixed ends*: no permutation can move them
without changing what the model computes, so they are matched by index and never tested.

The plan is read from the model's forward pass with ``torch.fx``: convolutions (``groups=1``) and linear
layers make new groups; batch norm keeps its group (its parameters and statistics move with the units);
activations, pooling, dropout, flatten and arithmetic with constants keep it; ``+``, ``-`` and ``*``
between two activations tie their groups. Anything else (``torch.cat``, grouped or depthwise
convolutions, layers with parameters of other kinds) is refused with a one-line :class:`PlanError`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from backmark.errors import BackmarkError

_INPUT, _OUTPUT = 0, 1  # the fixed ends' spaces


class PlanError(BackmarkError):
    """The model's layers cannot be paired unit by unit (one line: what, where, and what is supported)."""


SUPPORTED = (
    "supported: Conv1d/Conv2d (groups=1) and Linear layers, BatchNorm, element-wise activations, pooling, "
    "dropout, flatten and residual additions"
)


@dataclass(frozen=True)
class Producer:
    """A layer whose outputs are a group's units: its weight (rows are the units) and the group of its
    inputs (``None``: the model's input), with ``block`` input positions per input unit (a linear layer
    after a flatten reads ``C`` channels of ``block`` positions each; a convolution reads its kernel)."""

    layer: str
    input: int | None
    block: int


@dataclass(frozen=True)
class Consumer:
    """A layer that reads a group's units: its weight's columns are the units; ``output`` is the group of
    its own outputs (``None``: the model's output classes, whose order is fixed)."""

    layer: str
    output: int | None
    block: int


@dataclass(frozen=True)
class Group:
    """One set of exchangeable hidden units: ``size`` of them, written by ``producers``, read by
    ``consumers``, with per-unit parameters and buffers (biases, batch norm) in ``unit_tensors``."""

    name: str
    size: int
    producers: tuple[Producer, ...]
    consumers: tuple[Consumer, ...]
    unit_tensors: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """A model's groups in the order of its forward pass, and its convolution and linear layers in the
    order the forward pass runs them."""

    groups: tuple[Group, ...]
    layers: tuple[str, ...]


_KEEP_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.ReLU6, nn.Hardtanh,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
    nn.Softmax, nn.LogSoftmax,
)  # fmt: skip
_KEEP_FUNCTIONS: tuple[Callable[..., Any], ...] = (
    F.relu, F.leaky_relu, F.elu, F.gelu, F.silu, F.relu6, torch.relu, torch.sigmoid, torch.tanh,
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.dropout, F.softmax, F.log_softmax,
)  # fmt: skip
_KEEP_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone", "detach", "float"}
_TIE = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul, operator.truediv}
_TIE_METHODS = {"add", "sub", "mul", "div"}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}


class _Spaces:
    """Union-find over unit spaces; space 0 is the input, 1 the output."""

    def __init__(self) -> None:
        self.parent = [_INPUT, _OUTPUT]

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def tie(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            low, high = sorted((ra, rb))  # the fixed ends (0, 1) stay roots
            self.parent[high] = low
        return self.find(a)


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    return tuple(int(d) for d in meta.shape) if meta is not None and hasattr(meta, "shape") else ()


def trace_plan(model: nn.Module, *, input_shape: tuple[int, ...]) -> Plan:
    """The :class:`Plan` of ``model`` for inputs of ``input_shape`` (without the batch dimension).

    The model is traced symbolically and run once on zeros (in eval mode, on a copy's graph, without
    gradients) to learn the shapes at each flatten. Raises :class:`PlanError` for what cannot be paired.
    """
    try:
        graph = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for code it cannot trace
        raise PlanError(f"cannot trace the model's forward pass with torch.fx ({exc}); {SUPPORTED}") from None
    modules = dict(graph.named_modules())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(graph).propagate(torch.zeros(1, *input_shape))
    except Exception as exc:
        raise PlanError(f"the model does not run on inputs of shape {tuple(input_shape)} ({exc})") from None
    finally:
        model.train(was_training)
    spaces = _Spaces()
    unit: dict[fx.Node, tuple[int, int]] = {}  # node -> (space, positions per unit)
    producers: dict[int, list[tuple[str, int | None, int, int]]] = {}  # own space -> (layer, in space, ...)
    consumers: list[tuple[str, int, int, int]] = []  # (layer, input space, block, output space)
    unit_tensors: dict[int, list[str]] = {}
    sizes: dict[int, int] = {}
    layers: list[str] = []

    def tensor_args(node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if a in unit]  # lists too (torch.cat's)

    def refuse(node: fx.Node, what: str) -> PlanError:
        return PlanError(f"cannot pair the units of {node.name} ({what}); {SUPPORTED}")

    for node in graph.graph.nodes:
        if node.op == "placeholder":
            unit[node] = (_INPUT, 1)
        elif node.op == "get_attr":
            continue  # a constant (a Normalize layer's mean): it keeps the other operand's units
        elif node.op == "output":
            for arg in tensor_args(node):
                spaces.tie(unit[arg][0], _OUTPUT)
        elif node.op == "call_module":
            mod = modules[str(node.target)]
            args = tensor_args(node)
            if not args:
                raise refuse(node, "no traced input")
            space, block = unit[args[0]]
            name = str(node.target)
            if isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Linear):
                if isinstance(mod, nn.Conv1d | nn.Conv2d) and mod.groups != 1:
                    raise refuse(node, f"a convolution with groups={mod.groups}")
                layers.append(name)
                out = spaces.new()
                kernel = math.prod(mod.weight.shape[2:]) if mod.weight.dim() > 2 else block
                producers.setdefault(out, []).append((name, space, kernel, out))
                consumers.append((name, space, kernel, out))
                sizes[out] = int(mod.weight.shape[0])
                unit_tensors[out] = [f"{name}.bias"] if mod.bias is not None else []
                unit[node] = (out, 1)
            elif isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
                unit_tensors.setdefault(space, []).extend(
                    f"{name}.{t}" for t, v in (*mod.named_parameters(), *mod.named_buffers()) if v.dim() == 1
                )
                unit[node] = (space, block)
            elif isinstance(mod, nn.Flatten):
                shape = _shape(args[0])
                unit[node] = (space, block * math.prod(shape[2:]) if len(shape) > 2 else block)
            elif isinstance(mod, _KEEP_MODULES) or not any(True for _ in mod.parameters()):
                unit[node] = (space, block)
            else:
                raise refuse(node, f"a {type(mod).__name__} layer")
        elif node.op in ("call_function", "call_method"):
            args = tensor_args(node)
            if not args:
                continue  # sizes and other plain values
            target = node.target
            space, block = unit[args[0]]
            if (node.op == "call_method" and target in _FLATTEN_METHODS) or target is torch.flatten:
                before, after = _shape(args[0]), _shape(node)
                if len(after) > 2 or (
                    len(after) == 2 and len(before) > 2 and after[1] != math.prod(before[1:])
                ):
                    raise refuse(node, f"a reshape from {before} to {after}")
                unit[node] = (space, block * math.prod(before[2:]) if len(before) > 2 else block)
            elif target in _TIE or (node.op == "call_method" and target in _TIE_METHODS):
                for other in args[1:]:
                    space = spaces.tie(space, unit[other][0])
                unit[node] = (space, block)
            elif target in _KEEP_FUNCTIONS or (node.op == "call_method" and target in _KEEP_METHODS):
                unit[node] = (space, block)
            else:
                raise refuse(node, f"the operation {getattr(target, '__name__', target)}")
    return _assemble(spaces, producers, consumers, unit_tensors, sizes, tuple(layers))


def _assemble(
    spaces: _Spaces,
    producers: dict[int, list[tuple[str, int | None, int, int]]],
    consumers: list[tuple[str, int, int, int]],
    unit_tensors: dict[int, list[str]],
    sizes: dict[int, int],
    layers: tuple[str, ...],
) -> Plan:
    """Resolve every space to its root and number the hidden groups in order of their first producer."""
    roots: list[int] = []
    for raw in producers:
        root = spaces.find(raw)
        if root not in (_INPUT, _OUTPUT) and root not in roots:
            roots.append(root)
    index = {root: i for i, root in enumerate(roots)}

    def group_of(space: int | None) -> int | None:
        return None if space is None else index.get(spaces.find(space))

    groups = []
    for root in roots:
        raws = [raw for raw in producers if spaces.find(raw) == root]
        prods = tuple(
            Producer(layer, group_of(inp), block) for raw in raws for layer, inp, block, _ in producers[raw]
        )
        cons = tuple(
            Consumer(layer, group_of(out), block)
            for layer, inp, block, out in consumers
            if inp is not None and spaces.find(inp) == root
        )
        tensors = tuple(
            t for raw in sorted(unit_tensors) if spaces.find(raw) == root for t in unit_tensors[raw]
        )
        groups.append(Group(prods[0].layer, sizes[raws[0]], prods, cons, tensors))
    if not groups:
        raise PlanError(f"the model has no hidden layer whose units could be paired; {SUPPORTED}")
    return Plan(tuple(groups), layers)
