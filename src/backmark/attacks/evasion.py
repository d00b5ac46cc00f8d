"""Evasion: the suspect answers verification queries differently instead of removing the mark.

Two ways from the literature. (1) A detector in front of the model flags queries that do not look like
the task's data (trigger images are out of distribution by design) and answers them with something else:
Namba and Sakuma, "Robust Watermarking of Neural Network with Exponential Weighting" (AsiaCCS 2019), use an
autoencoder's reconstruction error; here a PCA fitted on the attacker's images plays that part. (2) An
ensemble: Hitaj, Hitaj and Mancini, "Evasion Attacks Against Watermarking Techniques found in MLaaS
Systems" (SNAMS 2019), serve several stolen models together so that no single owner's triggers dominate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from backmark.attacks._fit import fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, reinitialised, require_options
from backmark.attacks.registry import register_attack

FIT_SAMPLES = 5000  # images used to fit the PCA; the rest set the threshold


class DetectorGuard(nn.Module):
    """The model behind an out-of-distribution detector: flagged queries get other answers.

    The score of an image is its mean squared PCA reconstruction error in [0, 1] pixel units; above
    ``threshold`` the image is flagged and its logits are replaced: by random logits (``random``, so the
    answer is a uniformly random class) or by the model's logits with the top class pushed last
    (``second``, so the answer is the runner-up).
    """

    mean: torch.Tensor
    components: torch.Tensor
    threshold: torch.Tensor

    def __init__(
        self, model: nn.Module, mean: torch.Tensor, components: torch.Tensor, threshold: float, answer: str
    ) -> None:
        super().__init__()
        self.model, self.answer = model, answer
        self.register_buffer("mean", mean)  # (D,)
        self.register_buffer("components", components)  # (k, D), orthonormal rows
        self.register_buffer("threshold", torch.tensor(threshold))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error of each image of x (B, C, H, W): float (B,)."""
        centred = x.flatten(1) - self.mean
        recon = (centred @ self.components.T) @ self.components
        return (centred - recon).pow(2).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x)
        flagged = (self.score(x) > self.threshold).unsqueeze(1)
        if self.answer == "random":
            other = torch.rand_like(logits)
        else:
            other = logits.scatter(1, logits.argmax(1, keepdim=True), float("-inf"))
        return torch.where(flagged, other, logits)


@register_attack("ood-detector")
@dataclass(frozen=True, kw_only=True)
class OODDetector(WeightAttack):
    """Query evasion: a detector of out-of-distribution queries answers flagged ones differently.

    Paper: Namba and Sakuma, AsiaCCS 2019 (an autoencoder detector; here PCA reconstruction error);
    Lukas et al., SoK 2022 (https://arxiv.org/abs/2108.04974).

    Arguments:
        components (int): principal components kept (default 32; 1..1024, at most the input size).
        quantile (float): the threshold is this quantile of the scores of held-out attacker images, so
            about 1 - quantile of clean queries are flagged too (default 0.99; (0.5, 1)).
        answer (str): ``random`` (default: a uniformly random class) or ``second`` (the runner-up).
        seed (int): seeds which images fit the PCA (default 0).

    Shape:
        float (B, C, H, W) in [0, 1] -> logits (B, K).

    Example:
        >>> served = OODDetector(quantile=0.995)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("quantile",)

    components: int = 32
    quantile: float = 0.99
    answer: Literal["random", "second"] = "random"

    def check(self) -> None:
        require_options(
            self, {"components": "1..1024", "quantile": "(0.5, 1)", "answer": ("random", "second")}
        )

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        order = torch.randperm(len(data.images))
        n_fit = min(FIT_SAMPLES, max(1, len(order) // 2))
        fit_x = data.images[order[:n_fit]].flatten(1).float().div(255.0)
        held = data.images[order[n_fit:] if len(order) > n_fit else order].flatten(1).float().div(255.0)
        mean = fit_x.mean(dim=0)
        k = min(self.components, fit_x.shape[1], len(fit_x))
        _, _, vh = torch.linalg.svd(fit_x - mean, full_matrices=False)
        guard = DetectorGuard(model, mean, vh[:k].contiguous(), 0.0, self.answer)
        with torch.no_grad():
            threshold = float(torch.quantile(guard.score(held), self.quantile))
        guard.threshold.fill_(threshold)
        return guard


class Ensemble(nn.Module):
    """The mean of the members' softmax probabilities (returned as log-probabilities, so argmax is kept)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).softmax(dim=1) for m in self.members]).mean(dim=0)
        return probs.clamp_min(1e-12).log()


@register_attack("ensemble")
@dataclass(frozen=True, kw_only=True)
class EnsembleAttack(WeightAttack):
    """Ensemble evasion: serve the marked model averaged with a second stolen copy that lacks this key.

    Paper: Hitaj et al., SNAMS 2019. The second copy stands for a model stolen from another vendor (not
    marked with this key); it is emulated by a model of the same architecture that the attacker trains from
    scratch on its own data. Answers are the argmax of the mean softmax of the two.

    Arguments:
        epochs (int): training epochs of the second copy (default 5; 1..1000).
        lr (float): its peak learning rate, one-cycle schedule (default 0.05; (0, 1]).
        seed (int): seeds its initialisation and batch order (default 0).

    Shape:
        float (B, C, H, W) in [0, 1] -> log-probabilities (B, K).

    Example:
        >>> served = EnsembleAttack(epochs=5)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("epochs",)
    trains: ClassVar[bool] = True

    epochs: int = 5
    lr: float = 0.05

    def check(self) -> None:
        require_options(self, TRAINING)

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        other = reinitialised(model)
        ensemble = Ensemble([model, other])

        def report(epoch: int, _trained: nn.Module) -> None:
            if monitor is not None:
                monitor(epoch, ensemble)

        fit(other, data, epochs=self.epochs, lr=self.lr, schedule="onecycle", monitor=report)
        return ensemble
