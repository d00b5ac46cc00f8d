"""Helpers for the attack tests: a tiny CNN, a small synthetic attacker dataset, byte snapshots."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from backmark.attacks import Attack, AttackData, create_attack
from backmark.models import create_model


def tiny_cnn(seed: int = 0, num_classes: int = 10) -> nn.Module:
    """The registry's cnn at width 4 (about 3k parameters), for 1x28x28 inputs, in eval mode."""
    torch.manual_seed(seed)
    return create_model("cnn", num_classes=num_classes, input_shape=(1, 28, 28), width=4, hidden=16).eval()


# what else makes an attack quick, beyond one epoch: fewer random images, triggers, search steps
QUICK: dict[str, dict[str, object]] = {
    "overwrite": {"count": 40},
    "rekey": {"triggers": 10},
    "unlearn": {"steps": 3, "samples": 8, "per_class": 2},
    "launder": {"steps": 3, "samples": 8, "per_class": 2, "probe": 20, "stamped": 10},
    "adv-train": {"steps": 1},
}


def quick(name: str, **params: object) -> Attack:
    """The attack ``name`` with every epoch count set to 1, so a test runs in a fraction of a second."""
    cls = type(create_attack(name))
    fast = {f.name: 1 for f in dataclasses.fields(cls) if f.name.endswith("epochs")}
    return create_attack(name, **{**fast, **QUICK.get(name, {}), **params})


def synthetic_data() -> AttackData:
    """240 random 1x28x28 images; labels follow the mean brightness, so there is something to learn."""
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (240, 1, 28, 28), generator=gen, dtype=torch.uint8)
    images[:, :, :14] //= torch.randint(1, 8, (240, 1, 1, 1), generator=gen, dtype=torch.uint8)
    brightness = images.float().mean(dim=(1, 2, 3))
    labels = torch.bucketize(brightness, brightness.quantile(torch.linspace(0.1, 0.9, 9)))
    return AttackData(images, labels, 10)


def snapshot(model: nn.Module) -> dict[str, bytes]:
    """Every parameter and buffer as raw bytes (byte-identity, not closeness)."""
    return {k: v.detach().cpu().contiguous().numpy().tobytes() for k, v in model.state_dict().items()}


def changed(before: nn.Module, after: nn.Module) -> set[str]:
    """Names of the state entries whose values differ between two models of one architecture."""
    a, b = before.state_dict(), after.state_dict()
    return {k for k in a if not torch.equal(a[k], b[k])}
