"""Unlearning reverse-engineered triggers, in the manner of Neural Cleanse, aimed at backmark's triggers.

Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks" (IEEE S&P
2019, https://people.cs.uchicago.edu/~ravenben/publications/pdf/backdoor-sp19.pdf) reverse-engineer, for
every class, the smallest mask and pattern that flip clean images to it: a backdoored class needs a far
smaller one than the others, which a median-absolute-deviation anomaly index exposes; fine-tuning on
clean images stamped with the recovered trigger, under their correct labels, then unlearns the backdoor.
Written here from the paper, not from its code.

backmark's triggers are not a patch: each is a whole out-of-distribution image with its own label, so
the mask search alone is expected to find nothing abnormal. The scheme-aware half searches where the
mark actually lives: for every class, inputs synthesised from random starts (noise and smooth patterns)
that the model answers with that class at high confidence. A model that has learned trigger images
answers some random-looking images confidently; a search for such inputs lands near them.

Three steps, all on the attacker's own data:
1. Mask search: for every class c at once, a mask m (1, H, W) and a pattern p (C, H, W), both squashed
   to [0, 1] by a sigmoid, minimise cross-entropy to c of ``(1 - m) x + m p`` over batches of attacker
   images plus ``weight * mean(m)``; the weight grows 1.5x after a step that flips at least 90% of the
   batch and shrinks 1.5x otherwise (the paper's adaptive cost, simplified). A class's norm is the
   smallest L1 norm of a mask that flipped 90% (the last mask's if none did). Anomaly index:
   ``(median - norm) / (1.4826 MAD)``; a class above ``threshold`` (the paper's 2) is flagged.
2. Confident inputs: ``candidates`` random images per class (half noise, half smooth), the
   ``per_class`` the model already finds most confident for c kept, then optimised in pixel space
   (through a sigmoid) towards c for ``steps`` Adam steps.
3. Unlearning: fine-tune all layers on the attacker's data, plus, for each flagged class, a fifth of
   the attacker's images stamped with its mask and pattern and labelled with the model's answer on the
   unstamped image, plus the confident inputs with uniformly random labels, ``per_batch`` of them
   appended to every batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from backmark.attacks._fit import Mix, fit
from backmark.attacks.base import TRAINING, AttackData, Monitor, WeightAttack, require, require_options
from backmark.attacks.overwrite import generator, random_images, to_uint8
from backmark.attacks.registry import register_attack
from backmark.models.modes import evaluating
from backmark.training import model_device

SEARCH_LR = 0.1  # Adam step size of every search, on the sigmoid's inputs
FLIP_RATE = 0.9  # a mask counts once it flips this share of a batch to its class
STAMPED_SHARE = 0.2  # of the attacker's images, stamped per flagged class (Neural Cleanse used 20%)
_MAD_SCALE = 1.4826  # MAD of a normal sample times this estimates its standard deviation

# the trigger search's integer options (TriggerSearch's, below): inclusive ranges
SEARCH_RANGES: dict[str, str] = {
    "steps": "1..10000",
    "samples": "1..10000",
    "per_class": "1..10000",
    "per_batch": "1..1000",
}


@dataclass(frozen=True, eq=False)
class Reversed:
    """What the search found, on the CPU.

    Attributes:
        masks: float (K, 1, H, W) in [0, 1], one per class.
        patterns: float (K, C, H, W) in [0, 1].
        norms: float (K,), each mask's L1 norm (pixels covered).
        anomaly: float (K,), the anomaly index; larger is a smaller-than-usual mask.
        flagged: bool (K,), ``anomaly > threshold``.
        confident: float (K * per_class, C, H, W) in [0, 1], the synthesised confident inputs.
        confident_class: int64 (K * per_class,), the class each was optimised towards.
    """

    masks: torch.Tensor
    patterns: torch.Tensor
    norms: torch.Tensor
    anomaly: torch.Tensor
    flagged: torch.Tensor
    confident: torch.Tensor
    confident_class: torch.Tensor


def anomaly_index(norms: torch.Tensor) -> torch.Tensor:
    """Neural Cleanse's anomaly index of each norm: (median - norm) / (1.4826 * median absolute deviation)."""
    median = norms.median()
    mad = _MAD_SCALE * (norms - median).abs().median()
    return (median - norms) / mad.clamp_min(1e-12)


@torch.no_grad()
def with_stamped(
    model: nn.Module, data: AttackData, found: Reversed, classes: list[int], count: int, gen: torch.Generator
) -> AttackData:
    """The attacker's data plus, per class in ``classes``, ``count`` of its images (drawn from ``gen``)
    stamped with that class's mask and pattern and labelled with ``model``'s answers on the unstamped ones."""
    device = model_device(model)
    images, labels = [data.images], [data.labels]
    for c in classes:
        idx = torch.randperm(len(data.images), generator=gen)[:count]
        x = data.images[idx].float().div_(255.0)
        with evaluating(model):
            answers = torch.cat([model(b.to(device)).argmax(1).cpu() for b in torch.split(x, 1000)])
        mask, pattern = found.masks[c], found.patterns[c]
        images.append(to_uint8((1 - mask) * x + mask * pattern))
        labels.append(answers)
    return AttackData(torch.cat(images), torch.cat(labels), data.num_classes)


@dataclass(frozen=True, kw_only=True)
class TriggerSearch(WeightAttack):
    """The options that :class:`Unlearn` and :class:`~backmark.attacks.Launder` share, declared once.

    Both run the trigger search (steps 1 and 2 of the module docstring, :meth:`Unlearn.reverse`) and then
    retrain on the attacker's data with the confident inputs mixed in (:meth:`_retrain`). The search's
    options are ``steps``, ``samples`` and ``per_class`` (ranges :data:`SEARCH_RANGES`), the
    retraining's ``per_batch``, ``epochs`` and ``lr``; each subclass's Arguments document them with its
    own. Not an attack of its own: it is not registered, and a subclass adds its options and checks.
    """

    trains: ClassVar[bool] = True

    steps: int = 60
    samples: int = 20
    per_class: int = 20
    per_batch: int = 10
    epochs: int = 3
    lr: float = 0.01

    def check(self) -> None:
        """The shared options' ranges: :data:`SEARCH_RANGES`, then ``epochs`` and ``lr``."""
        require_options(self, {**SEARCH_RANGES, **TRAINING})

    def _retrain(
        self,
        model: nn.Module,
        data: AttackData,
        found: Reversed,
        gen: torch.Generator,
        monitor: Monitor | None,
    ) -> None:
        """Train ``model`` in place on ``data`` with the confident inputs ``found`` appended under uniformly
        random labels (drawn from ``gen``), ``per_batch`` of them in every batch, so that they stop
        meaning a class; ``epochs`` epochs at ``lr``."""
        confident = to_uint8(found.confident)
        labels = torch.randint(data.num_classes, (len(confident),), generator=gen)
        mix = Mix(confident, labels, per_batch=self.per_batch)
        fit(model, data, epochs=self.epochs, lr=self.lr, monitor=monitor, mix=mix)


@register_attack("unlearn")
@dataclass(frozen=True, kw_only=True)
class Unlearn(TriggerSearch):
    """Unlearn: reverse-engineer triggers (Neural Cleanse masks, confident inputs), then unlearn them.

    Paper: Wang et al., Neural Cleanse, IEEE S&P 2019
    (https://people.cs.uchicago.edu/~ravenben/publications/pdf/backdoor-sp19.pdf); the search for
    confident random-looking inputs is the part aimed at backmark's out-of-distribution triggers (module
    docstring). :meth:`reverse` returns what the search found, for inspection. The first six options are
    :class:`TriggerSearch`'s, which :class:`~backmark.attacks.Launder` shares.

    Arguments:
        steps (int): optimisation steps of each search, mask and inputs (default 60; 1..10000).
        samples (int): attacker images per step of the mask search, for every class (default 20; 1..10000).
        per_class (int): confident inputs synthesised per class (default 20; 1..10000).
        per_batch (int): confident inputs appended to every batch of 100 attacker images (default 10;
            1..1000).
        epochs (int): unlearning epochs over the attacker's data (default 3; 1..1000).
        lr (float): constant SGD learning rate of the unlearning (default 0.01; (0, 1]).
        threshold (float): anomaly index above which a class is flagged (default 2.0, the paper's; > 0).
        weight (float): initial weight of the mask's mean in the mask search's loss (default 0.01; > 0).
        candidates (int): random starts per class, of which the most confident are kept (default 5 per
            kept input; ``per_class``..100000).
        seed (int): seeds the searches, the random labels, the batch order and dropout (default 0).

    Shape:
        model input float (B, C, H, W) in [0, 1] -> logits (B, K); the returned model has the same shapes.
        Masks are (K, 1, H, W), patterns and confident inputs (·, C, H, W) of the attacker's image shape.

    Example:
        >>> found = Unlearn(steps=10).reverse(marked, attacker_data)   # found.flagged, found.confident
        >>> cleaned = Unlearn(steps=10, epochs=3)(marked, attacker_data)
    """

    shown: ClassVar[tuple[str, ...]] = ("steps", "epochs", "lr")

    threshold: float = 2.0
    weight: float = 0.01
    candidates: int | None = None

    def check(self) -> None:
        super().check()
        n = self.name
        require(self.threshold > 0, f"{n}: threshold must be positive, got {self.threshold}")
        require(self.weight > 0, f"{n}: weight must be positive, got {self.weight}")
        if self.candidates is not None:
            require(
                self.per_class <= self.candidates <= 100_000,
                f"{n}: candidates must lie in per_class..100000 ({self.per_class}..100000), "
                f"got {self.candidates}",
            )

    def _masks(
        self, model: nn.Module, data: AttackData, k: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step 1 for every class at once: masks (K, 1, H, W), patterns (K, C, H, W), norms (K,)."""
        device = model_device(model)
        c, h, w = data.input_shape
        mask_raw = torch.full((k, 1, h, w), -3.0, device=device, requires_grad=True)
        pattern_raw = torch.randn((k, c, h, w), generator=gen).to(device).requires_grad_(True)
        opt = torch.optim.Adam([mask_raw, pattern_raw], lr=SEARCH_LR)
        weight = torch.full((k,), self.weight, device=device)
        targets = torch.arange(k, device=device).repeat_interleave(self.samples)
        best = torch.full((k,), float(h * w), device=device)
        best_mask = torch.sigmoid(mask_raw.detach()).clone()
        best_pattern = torch.sigmoid(pattern_raw.detach()).clone()
        for _ in range(self.steps):
            idx = torch.randint(len(data.images), (self.samples,), generator=gen)
            x = data.images[idx].to(device).float().div_(255.0)  # (S, C, H, W)
            mask, pattern = torch.sigmoid(mask_raw), torch.sigmoid(pattern_raw)
            stamped = (1 - mask[:, None]) * x[None] + (mask * pattern)[:, None]  # (K, S, C, H, W)
            logits = model(stamped.flatten(0, 1))
            ce = F.cross_entropy(logits, targets, reduction="none").view(k, -1).mean(1)
            loss = (ce + weight * mask.mean(dim=(1, 2, 3))).sum()
            opt.zero_grad(set_to_none=True)
            (grad_m, grad_p) = torch.autograd.grad(loss, [mask_raw, pattern_raw])
            mask_raw.grad, pattern_raw.grad = grad_m, grad_p
            opt.step()
            with torch.no_grad():
                flipped = (logits.argmax(1) == targets).float().view(k, -1).mean(1) >= FLIP_RATE
                norms = mask.detach().sum(dim=(1, 2, 3))
                better = flipped & (norms < best)
                best = torch.where(better, norms, best)
                best_mask[better], best_pattern[better] = mask.detach()[better], pattern.detach()[better]
                weight = torch.where(flipped, weight * 1.5, weight / 1.5)
        never = best >= h * w  # no mask flipped 90%: keep the last one and its norm
        with torch.no_grad():
            last_mask, last_pattern = torch.sigmoid(mask_raw), torch.sigmoid(pattern_raw)
            best_mask[never], best_pattern[never] = last_mask[never], last_pattern[never]
            best = torch.where(never, last_mask.sum(dim=(1, 2, 3)), best)
        return best_mask.cpu(), best_pattern.cpu(), best.cpu()

    def _confident(
        self, model: nn.Module, data: AttackData, k: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2: (K * per_class, C, H, W) inputs optimised towards their class, and those classes."""
        device = model_device(model)
        per = self.candidates or 5 * self.per_class
        half = per * k // 2
        starts = torch.cat(
            [
                random_images("noise", half, data.input_shape, gen),
                random_images("abstract", per * k - half, data.input_shape, gen),
            ]
        ).clamp(0.01, 0.99)
        with torch.no_grad():
            logp = torch.cat([model(b.to(device)).log_softmax(1).cpu() for b in torch.split(starts, 1000)])
        keep = logp.topk(self.per_class, dim=0).indices.T.reshape(-1)  # (K * per_class,), class-major
        classes = torch.arange(k).repeat_interleave(self.per_class)
        raw = torch.logit(starts[keep]).to(device).requires_grad_(True)
        target = classes.to(device)
        opt = torch.optim.Adam([raw], lr=SEARCH_LR)
        for _ in range(self.steps):
            loss = F.cross_entropy(model(torch.sigmoid(raw)), target)
            opt.zero_grad(set_to_none=True)
            (raw.grad,) = torch.autograd.grad(loss, [raw])
            opt.step()
        return torch.sigmoid(raw.detach()).cpu(), classes

    def reverse(self, model: nn.Module, data: AttackData) -> Reversed:
        """Steps 1 and 2 on ``model`` (queried in eval mode, never changed), seeded by ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self._reverse(model, data)

    def _reverse(self, model: nn.Module, data: AttackData) -> Reversed:
        gen = generator()
        with evaluating(model):
            k = data.num_classes
            masks, patterns, norms = self._masks(model, data, k, gen)
            confident, classes = self._confident(model, data, k, gen)
        anomaly = anomaly_index(norms)
        return Reversed(masks, patterns, norms, anomaly, anomaly > self.threshold, confident, classes)

    def run(self, model: nn.Module, data: AttackData, monitor: Monitor | None) -> nn.Module:
        found = self._reverse(model, data)
        gen = generator()
        flagged = found.flagged.nonzero().flatten().tolist()
        count = max(1, round(STAMPED_SHARE * len(data.images)))
        mixed = with_stamped(model, data, found, flagged, count, gen)
        self._retrain(model, mixed, found, gen, monitor)
        return model
