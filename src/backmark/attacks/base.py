"""What every removal attack shares: the attacker's data, the access it needs, and a safe call.

An attack is configured when it is built (a frozen dataclass whose fields are its hyperparameters) and is
given a model and the attacker's data when it is called, in the manner of foolbox::

    attack = FTAL(epochs=20, lr=0.01)
    stolen = attack(marked_model, attacker_data)   # a NEW module; marked_model is left untouched

The base class deep-copies the model before a weight attack touches it, hands a label-only attack nothing
but top-1 answers and a freshly initialised copy of the architecture, seeds the run without disturbing the
caller's random state, and restores the training flag of every submodule of the input model.
"""

from __future__ import annotations

import copy
import numbers
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from backmark.data import ImageDataset
from backmark.errors import BackmarkError, first_line
from backmark.models.modes import evaluating
from backmark.targets import ModuleTarget, Target
from backmark.training.device import model_device

Access = Literal["weights", "labels"]
"""``weights``: the attacker holds the model itself; ``labels``: it can only query top-1 answers."""

Monitor = Callable[[int, nn.Module], None]
"""Called as ``monitor(epoch, model)`` after every training epoch (1-based) of an attack that trains.

It exists for measurement (the paper's accuracy-per-epoch figures); attacks never read what it computes.
"""


@dataclass(frozen=True, eq=False)
class AttackData:
    """The attacker's own labelled images.

    Attributes:
        images: uint8 (N, C, H, W), pixels 0..255.
        labels: int64 (N,), the attacker's labels in ``0 .. num_classes - 1`` (a label-only attack such
            as model extraction ignores them and asks the suspect model instead).
        num_classes: the size of the attacker's label set.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise BackmarkError(f"attacker images must be uint8 (N, C, H, W), got {self.images.dtype}")
        if self.labels.shape != (len(self.images),) or self.labels.dtype != torch.int64:
            raise BackmarkError(f"attacker labels must be int64 ({len(self.images)},)")
        if len(self.images) == 0:
            raise BackmarkError("the attacker needs at least one image")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes:
            raise BackmarkError(f"attacker labels must lie in 0..{self.num_classes - 1}")

    @staticmethod
    def from_dataset(data: ImageDataset) -> AttackData:
        """The training split of ``data`` as attacker data."""
        return AttackData(data.train_x, data.train_y, data.num_classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    def pixels(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Images ``start:stop`` as float32 in [0, 1]."""
        return self.images[start:stop].float().div_(255.0)


def require(condition: bool, message: str) -> None:
    """Raise a one-line :class:`BackmarkError` for an option out of range."""
    if not condition:
        raise BackmarkError(message)


_INTEGERS = re.compile(r"^(-?[0-9]+)\.\.(-?[0-9]+)$")
_INTERVAL = re.compile(r"^([\[(])\s*(-?[0-9.e+-]+)\s*,\s*(-?[0-9.e+-]+)\s*([\])])$")

Options = Mapping[str, str | tuple[str, ...]]
"""An attack's option ranges by field name: ``"1..100"`` (an integer, both ends included), an interval
such as ``"(0, 1]"`` (a number; a round bracket leaves its end out), or a tuple of the allowed words."""

TRAINING: dict[str, str] = {"epochs": "1..1000", "lr": "(0, 1]"}
"""The ranges every training attack shares."""


def _holds(value: object, spec: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's numbers are Real too
        return False
    integers = _INTEGERS.match(spec)
    if integers:
        return isinstance(value, numbers.Integral) and int(integers[1]) <= int(value) <= int(integers[2])
    interval = _INTERVAL.match(spec)
    if interval is None:
        raise ValueError(f"not a range: {spec!r} (write 1..100, (0, 1], [0, 1) ...)")
    left, lo, hi, right = interval[1], float(interval[2]), float(interval[3]), interval[4]
    number = float(value)
    above = number > lo if left == "(" else number >= lo
    below = number < hi if right == ")" else number <= hi
    return above and below


def require_options(attack: object, options: Options) -> None:
    """Raise a one-line :class:`BackmarkError` for the first option of ``attack`` (by field name) outside
    its range or its allowed words (:data:`Options`); an option set to ``None`` (off) is not checked."""
    name = getattr(attack, "name", type(attack).__name__)
    for field, allowed in options.items():
        value = getattr(attack, field)
        if value is None:
            continue
        if isinstance(allowed, tuple):
            require(value in allowed, f"{name}: {field} must be one of {', '.join(allowed)}, got {value!r}")
        elif not _holds(value, allowed):
            integral = isinstance(value, numbers.Integral)
            kind = "be an integer in" if _INTEGERS.match(allowed) and not integral else "lie in"
            raise BackmarkError(f"{name}: {field} must {kind} {allowed}, got {value}")


def output_layer_name(model: nn.Module) -> str:
    """The qualified name of the output layer: ``fc`` if it is a Linear, else the last Linear."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        return "fc"
    names: list[str] = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise BackmarkError("the model has no nn.Linear output layer, which this attack replaces or trains")
    return names[-1]


def output_layer(model: nn.Module) -> nn.Linear:
    layer = model.get_submodule(output_layer_name(model))
    assert isinstance(layer, nn.Linear)
    return layer


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``name`` with ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def reinitialised(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with fresh weights (every ``reset_parameters``), its preprocessing kept.

    Batch-norm statistics are reset too; buffers of modules without ``reset_parameters``, such as the
    normalisation layer's mean and standard deviation, are kept.
    """
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return fresh


@dataclass(frozen=True, kw_only=True)
class Attack(ABC):
    """A removal attack: its fields are its hyperparameters, ``seed`` makes a run reproducible.

    Class attributes a subclass sets (``name`` is set by ``@register_attack("ftal")``, so that the
    name is written once):
        name: the registry name, e.g. ``"ftal"``.
        access: ``"weights"`` or ``"labels"`` (see :data:`Access`).
        replaces_head: True if the output layer is re-initialised or replaced; evaluations then also
            report the reference code's (not black-box) figure with the original layer swapped back in.
        trains: True if the attack trains for epochs and calls its monitor after each.
        starts_fresh: True if the attacked model is trained from fresh weights (model extraction), so
            its training does not start from the marked model.
        shown: the options every label shows (:meth:`describe`), defaults or not.
    """

    name: ClassVar[str] = ""
    access: ClassVar[Access] = "weights"
    replaces_head: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    starts_fresh: ClassVar[bool] = False
    shown: ClassVar[tuple[str, ...]] = ()

    seed: int = 0

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:  # noqa: B027  (optional hook: attacks without options need none)
        """Raise a one-line BackmarkError if an option is out of range (subclasses override it)."""

    def params(self) -> dict[str, Any]:
        """The hyperparameters as a JSON-ready dict (what reports record)."""
        return asdict(self)

    def describe(self) -> str:
        """A short label for tables: the name, the :attr:`shown` options and any other non-default one."""
        defaults, params = type(self)(), self.params()
        keys = [
            *self.shown,
            *(k for k, v in params.items() if k not in self.shown and getattr(defaults, k) != v),
        ]
        options = [f"{k}={params[k]}" for k in keys if k != "seed"]
        return self.name + (f" ({', '.join(options)})" if options else "")

    def task(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled test data of the task the attacked model serves (the same one, unless overridden)."""
        return images, labels

    @property
    def changes_task(self) -> bool:
        """True if the attacked model serves another label set (transfer learning)."""
        return False

    def check_classes(self, outputs: int, data: AttackData) -> None:
        """Refuse attacker data whose label set does not fit the model's ``outputs`` classes."""
        if outputs != data.num_classes:
            raise BackmarkError(
                f"{self.name}: the model has {outputs} outputs but the attacker's data has "
                f"{data.num_classes} classes; give data of the model's task"
            )

    def _check_fits(self, model: nn.Module, data: AttackData) -> None:
        """One eval-mode query with an attacker image: the shapes must fit before any work starts."""
        try:
            with evaluating(model), torch.no_grad():
                out = model(data.pixels(0, 1).to(model_device(model)))
        except RuntimeError as exc:
            reason = first_line(exc, limit=120)
            shape = "x".join(map(str, data.input_shape))
            raise BackmarkError(
                f"{self.name}: the model cannot take the attacker's {shape} images ({reason})"
            ) from None
        if out.dim() != 2:
            raise BackmarkError(
                f"{self.name}: the model answers {tuple(out.shape)} per batch, not (B, classes)"
            )
        self.check_classes(int(out.shape[1]), data)

    def __call__(self, model: nn.Module, data: AttackData, *, monitor: Monitor | None = None) -> nn.Module:
        """Attack ``model`` with ``data``; return a new module in eval mode. ``model`` is never changed.

        Raises a one-line BackmarkError if the attacker's images or label set do not fit the model.
        """
        # queried in eval mode; every submodule's own mode is back afterwards, whatever _apply did
        with evaluating(model), torch.random.fork_rng(devices=[]):
            self._check_fits(model, data)
            torch.manual_seed(self.seed)
            result = self._apply(model, data, monitor)
        if result is model:
            raise RuntimeError(f"attack {self.name} returned its input model instead of a new one")
        return result.eval()

    @abstractmethod
    def _apply(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module: ...


@dataclass(frozen=True, kw_only=True)
class WeightAttack(Attack):
    """An attack that holds the model: :meth:`run` gets a private deep copy it may change and return."""

    access: ClassVar[Access] = "weights"

    def _apply(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        return self.run(copy.deepcopy(model), data, monitor)

    @abstractmethod
    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        """Change and return ``model`` (a copy), or return a new module built around it."""


@dataclass(frozen=True, kw_only=True)
class LabelAttack(Attack):
    """An attack that only sees top-1 answers: :meth:`steal` gets an oracle and the bare architecture."""

    access: ClassVar[Access] = "labels"
    starts_fresh: ClassVar[bool] = True

    def _apply(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        return self.steal(ModuleTarget(model), reinitialised(model), data, monitor)

    @abstractmethod
    def steal(
        self, oracle: Target, template: nn.Module, data: AttackData, monitor: Monitor | None
    ) -> nn.Module:
        """Build a model from ``oracle``'s labels; ``template`` is the architecture with fresh weights."""
