"""Where training and queries run: ``cpu``, ``cuda``, ``mps``, or ``auto`` (the best one present).

Under ``torchrun`` each process trains on its own accelerator: ``auto`` and ``cuda`` pick
``cuda:LOCAL_RANK`` there, so N processes on a machine with N GPUs use one GPU each.
"""

from __future__ import annotations

import os

import torch

from backmark.constants import DEVICES
from backmark.errors import BackmarkError

Device = str | torch.device | None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: Device = None) -> torch.device:
    """The :class:`torch.device` for ``device``: None or ``"auto"`` is cuda, else mps, else cpu.

    A device that this machine lacks raises a one-line BackmarkError naming the ones it has.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    kind = name.split(":", 1)[0]
    if kind not in DEVICES:
        raise BackmarkError(
            f"{{device}} must be one of {', '.join(DEVICES)}, got {device!r}", params=["device"]
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local % torch.cuda.device_count())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if not present[kind]:
        have = ", ".join(k for k, ok in present.items() if ok)
        raise BackmarkError(
            f"{{device}} {kind} is not available on this machine (it has: {have}); "
            f"use {{device}} auto or cpu, or install a torch build for {kind}",
            params=["device"],
        )
    if name == "cuda":
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device(name)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (cpu for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
