"""The owner's side of an experiment, one pipeline for the demo and the attack study.

A key derived from the seed, a clean baseline, a FromScratch model, a PreTrained model (the baseline
marked by continued training) and, if asked, more clean models as controls; each verified black-box
against the key. Seeds: clean ``config.seed``, FromScratch +1, PreTrained +2, controls +3 and on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backmark.data import ImageDataset
from backmark.embed import (
    PRETRAINED_CONFIG,
    TrainConfig,
    Trained,
    embed_from_scratch,
    embed_pretrained,
    train_clean,
    without_triggers,
)
from backmark.infra.seeds import key_seed
from backmark.keys import MarkingKey, generate_key
from backmark.keys.derive import REAL_PARTS
from backmark.keys.keygen import image_pool
from backmark.log import Log, say
from backmark.training import Device
from backmark.verify import DEFAULT_ALPHA, VerificationResult, verify


@dataclass(frozen=True)
class OwnerModel:
    """One of the owner's models, how its training went, and its verification against the key."""

    name: str  # clean, from-scratch, pretrained, clean-2, ...
    marked: bool
    trained: Trained
    verification: VerificationResult


@dataclass(frozen=True)
class OwnerModels:
    """What :func:`owner_models` made: the key and the models in training order."""

    key: MarkingKey
    models: tuple[OwnerModel, ...]

    def __getitem__(self, name: str) -> OwnerModel:
        return next(m for m in self.models if m.name == name)

    @property
    def siblings(self) -> tuple[OwnerModel, ...]:
        """The FromScratch model's siblings (same recipe, other seeds), in training order."""
        return tuple(m for m in self.models if m.name.startswith("sibling-"))


def derived_key(
    data: ImageDataset, *, size: int, seed: int, purpose: str, kind: str = "abstract"
) -> MarkingKey:
    """A key of ``size`` triggers of ``kind`` for ``data``, its images and labels derived from ``seed``.

    ``kind`` is a generated kind (``abstract``, the default, or ``noise``) or one made of real images
    (``heldout``, ``blend``), drawn from ``data``'s training images. Reproducible, hence not secret: for
    experiments only (``backmark keygen`` makes real keys). The commitment openings stay fresh, so the
    key id differs between runs.
    """
    name = purpose if kind == "abstract" else f"{purpose}-{kind}"  # abstract keys as they always were
    master = key_seed(f"backmark/{name}-key/", seed)
    real = kind in REAL_PARTS
    return generate_key(
        num_classes=data.num_classes,
        input_shape=data.input_shape,
        size=size,
        kind=kind,
        seed=master,
        pool=image_pool(data, num_classes=data.num_classes, input_shape=data.input_shape) if real else None,
        pool_name=f"{data.name} (the owner's training images)" if real else "",
    )


def owner_models(
    data: ImageDataset,
    *,
    key_size: int,
    purpose: str,
    config: TrainConfig,
    pretrained_epochs: int,
    arch: str = "cnn",
    arch_args: dict[str, int] | None = None,
    controls: int = 0,
    siblings: int = 0,
    alpha: float = DEFAULT_ALPHA,
    progress: bool = False,
    log: Log | None = None,
    device: Device = "auto",
    kind: str = "abstract",
) -> OwnerModels:
    """Make the key (:func:`derived_key` of ``kind`` with ``config.seed`` and ``purpose``), train, verify.

    ``config`` trains the clean and FromScratch models; the PreTrained model continues the clean one
    with :data:`~backmark.embed.PRETRAINED_CONFIG` for at most ``pretrained_epochs`` epochs. ``controls``
    more clean models, from other seeds, show what unmarked models answer. ``siblings`` more FromScratch
    models of the same recipe, seeds ``config.seed + 101`` and on, are the deployed model's siblings
    for the contrast test (docs/contrast.md; their training time is the owner's cost of that test;
    named ``sibling-1`` and on). ``progress`` shows the
    trainer's progress bars; the models train, and are returned, on ``device``.
    """
    seed = config.seed
    say(log, f"key: {key_size} {kind} triggers, derived from seed {seed}")
    key = derived_key(data, size=key_size, seed=seed, purpose=purpose, kind=kind)
    vk = key.verification_key()
    unseen = without_triggers(data, key)  # real-image triggers are held out of every model's training

    def clean(seed: int) -> Trained:
        return train_clean(
            unseen,
            arch=arch,
            arch_args=arch_args,
            config=replace(config, seed=seed),
            progress=progress,
            device=device,
        )

    say(log, f"clean baseline ({arch}, {config.epochs} epochs)")
    runs = [("clean", clean(seed))]
    say(log, "FromScratch: a fresh model trained with the triggers")
    scratch = replace(config, seed=seed + 1)
    runs.append(
        (
            "from-scratch",
            embed_from_scratch(
                data, key, arch=arch, arch_args=arch_args, config=scratch, progress=progress, device=device
            ),
        )
    )
    say(log, "PreTrained: the baseline marked by continued training")
    base = runs[0][1]
    pre = replace(PRETRAINED_CONFIG, epochs=pretrained_epochs, seed=seed + 2)
    runs.append(
        (
            "pretrained",
            embed_pretrained(base.model, base.info, data, key, config=pre, progress=progress, device=device),
        )
    )
    for i in range(siblings):
        say(log, f"sibling {i + 1} of {siblings}: the FromScratch recipe, seed {seed + 101 + i}")
        again = replace(config, seed=seed + 101 + i)
        runs.append(
            (
                f"sibling-{i + 1}",
                embed_from_scratch(
                    data, key, arch=arch, arch_args=arch_args, config=again, progress=progress, device=device
                ),
            )
        )
    for i in range(controls):
        say(log, f"a clean control (seed {seed + 3 + i}), trained independently, never shown the key")
        runs.append((f"clean-{i + 2}", clean(seed + 3 + i)))
    models = []
    for name, trained in runs:
        result = verify(trained.model, key, vk, alpha=alpha)
        e = result.evidence
        say(log, f"  {name}: test acc {trained.result.test_acc:.2%}, triggers {e.matches}/{e.n}")
        marked = name in ("from-scratch", "pretrained") or name.startswith("sibling-")
        models.append(OwnerModel(name, marked, trained, result))
    return OwnerModels(key, tuple(models))


__all__ = ["OwnerModel", "OwnerModels", "derived_key", "owner_models"]
