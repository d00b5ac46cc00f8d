"""Neural laundering: reconstruct triggers, reset the neurons they excite, then retrain.

Aiken, Kim, Woo and Ryoo, "Neural Network Laundering: Removing Black-Box Backdoor Watermarks from Deep
Neural Networks" (Computers & Security 2021, https://arxiv.org/abs/2004.11368), one of the removal
attacks of Lukas et al., SoK, IEEE S&P 2022 (https://arxiv.org/abs/2108.04974). Written here from the
paper's description, not from its code. Three steps, all on the attacker's own data:

1. Reconstruct candidate triggers for every class with the search of :class:`~backmark.attacks.Unlearn`
   (reused, not copied): Neural Cleanse's mask and pattern per class, which stamped on the attacker's
   images flip them to that class, and the inputs synthesised from random starts that the model answers
   with each class at high confidence (the part aimed at backmark's out-of-distribution triggers).
2. Reset neurons: every output channel of a convolution and every unit of a hidden linear layer (the
   output layer is kept) is a neuron, its activation the layer's output averaged over space. For each
   class, the reconstructed inputs of that class (``probe`` stamped attacker images and its confident
   inputs) are compared with ``probe`` clean attacker images: a neuron's gap is the difference of mean
   activations in units of its standard deviation on the clean images, and its score the largest gap
   over the classes. Neurons scoring above ``threshold`` are reset (their incoming weights and bias set
   to zero), at most ``fraction`` of each layer, highest score first: they respond to the reconstructed
   triggers far more than clean data ever makes them.
3. Retrain all layers on the attacker's data plus, for every class, ``stamped`` of its images stamped
   with that class's mask and pattern under the model's answers on the clean images, and the confident
   inputs under uniformly random labels, ``per_batch`` of them in every batch (as ``unlearn`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from backmark.attacks.base import AttackData, Monitor, output_layer, require, require_options
from backmark.attacks.overwrite import generator
from backmark.attacks.registry import register_attack
from backmark.attacks.unlearn import Reversed, TriggerSearch, Unlearn, with_stamped
from backmark.models.modes import evaluating
from backmark.training import model_device


def neuron_layers(model: nn.Module) -> dict[str, nn.Conv2d | nn.Linear]:
    """The layers whose outputs are neurons: every convolution and every linear layer but the output one."""
    head = output_layer(model)
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) or (isinstance(m, nn.Linear) and m is not head)
    }


@torch.no_grad()
def activations(
    model: nn.Module, layers: dict[str, nn.Conv2d | nn.Linear], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Each layer's output for float images ``x`` (N, C, H, W) in [0, 1], averaged over space.

    Returns name -> float (N, U), U the layer's output channels or units.
    """
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def hook(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def save(_m: nn.Module, _args: object, out: torch.Tensor) -> None:
            captured[name].append((out.mean(dim=(2, 3)) if out.dim() == 4 else out).float().cpu())

        return save

    handles = [layer.register_forward_hook(hook(name)) for name, layer in layers.items()]
    device = model_device(model)
    try:
        with evaluating(model):
            for batch in torch.split(x, 500):
                model(batch.to(device))
    finally:
        for h in handles:
            h.remove()
    return {name: torch.cat(parts) for name, parts in captured.items()}


def neuron_scores(
    model: nn.Module, clean: torch.Tensor, groups: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per layer, each neuron's largest standardised gap (float (U,)) between a group and ``clean``."""
    layers = neuron_layers(model)
    base = activations(model, layers, clean)
    gaps: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for group in groups:
        acts = activations(model, layers, group)
        for name in layers:
            mean, std = base[name].mean(0), base[name].std(0).clamp_min(1e-6)
            gaps[name].append((acts[name].mean(0) - mean) / std)
    return {name: torch.stack(g).amax(0) for name, g in gaps.items()}


@torch.no_grad()
def reset_neurons(layer: nn.Conv2d | nn.Linear, units: torch.Tensor) -> None:
    """Zero the incoming weights (and bias) of output ``units`` (int64 (k,)) of ``layer``, in place."""
    idx = units.to(layer.weight.device)
    layer.weight[idx] = 0.0
    if layer.bias is not None:
        layer.bias[idx] = 0.0


@register_attack("launder")
@dataclass(frozen=True, kw_only=True)
class Launder(TriggerSearch):
    """Launder: reconstruct triggers per class, reset the neurons they excite, retrain on clean data.

    Paper: Aiken et al., Computers & Security 2021 (https://arxiv.org/abs/2004.11368); Lukas et al., SoK,
    IEEE S&P 2022 (https://arxiv.org/abs/2108.04974). The trigger reconstruction is :class:`Unlearn`'s
    search (:meth:`Unlearn.reverse`). :meth:`scores` returns every neuron's score, for inspection. The
    first six options are :class:`~backmark.attacks.unlearn.TriggerSearch`'s, which :class:`Unlearn` shares.

    Arguments:
        steps (int): optimisation steps of each reconstruction search (default 60; 1..10000).
        samples (int): attacker images per step of the mask search, for every class (default 20;
            1..10000).
        per_class (int): confident inputs synthesised per class (default 20; 1..10000).
        per_batch (int): confident inputs appended to every batch of 100 (default 10; 1..1000).
        epochs (int): retraining epochs (default 3; 1..1000).
        lr (float): constant SGD learning rate of the retraining (default 0.01; (0, 1]).
        probe (int): clean attacker images, and stamped ones per class, whose activations are compared
            (default 200; 2..100000).
        threshold (float): standardised activation gap above which a neuron is reset (default 3.0; > 0).
        fraction (float): at most this share of each layer's neurons is reset (default 0.1; [0, 1]).
        stamped (int): stamped attacker images per class added to the retraining data (default 200;
            0..1000000).
        seed (int): seeds the searches, the probes, the random labels, the batch order and dropout
            (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.

    Example:
        >>> laundered = Launder(steps=10, threshold=3.0, fraction=0.1, epochs=3)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("threshold", "fraction", "epochs", "lr")

    probe: int = 200
    threshold: float = 3.0
    fraction: float = 0.1
    stamped: int = 200

    def check(self) -> None:
        super().check()
        require_options(self, {"probe": "2..100000", "stamped": "0..1000000", "fraction": "[0, 1]"})
        require(self.threshold > 0, f"{self.name}: threshold must be positive, got {self.threshold}")

    def _search(self) -> Unlearn:
        """The reconstruction: :class:`Unlearn`'s search with this attack's settings and seed."""
        return Unlearn(steps=self.steps, samples=self.samples, per_class=self.per_class, seed=self.seed)

    def _groups(
        self, model: nn.Module, data: AttackData, found: Reversed, gen: torch.Generator
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``probe`` clean images, and per class its stamped probe images and confident inputs."""
        idx = torch.randperm(len(data.images), generator=gen)[: self.probe]
        clean = data.images[idx].float().div_(255.0)
        groups = [
            torch.cat(
                [
                    (1 - found.masks[c]) * clean + found.masks[c] * found.patterns[c],
                    found.confident[found.confident_class == c],
                ]
            )
            for c in range(data.num_classes)
        ]
        return clean, groups

    def scores(self, model: nn.Module, data: AttackData) -> dict[str, torch.Tensor]:
        """Every neuron's score (steps 1 and 2, without resetting): layer name -> float (U,)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            found = self._search().reverse(model, data)
            clean, groups = self._groups(model, data, found, generator())
            return neuron_scores(model, clean, groups)

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        found = self._search().reverse(model, data)
        gen = generator()
        clean, groups = self._groups(model, data, found, gen)
        classes = list(range(data.num_classes)) if self.stamped else []
        mixed = with_stamped(model, data, found, classes, self.stamped, gen)  # the answers before resets
        scores = neuron_scores(model, clean, groups)
        for name, layer in neuron_layers(model).items():
            score = scores[name]
            top = torch.argsort(score, descending=True, stable=True)[: int(self.fraction * len(score))]
            reset_neurons(layer, top[score[top] > self.threshold])
        self._retrain(model, mixed, found, gen, monitor)
        return model
