"""The trainer: the schedule it follows, the device it runs on, its options."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.models import create_model
from backmark.training import TrainConfig, resolve_device, train


def test_the_optimiser_follows_the_schedule(
    fashion_small: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer steps the schedule once per batch: one-cycle peaks at lr and ends near 0."""
    data = fashion_small.subset(train=300, test=100, seed=0)
    seen: list[float] = []
    original = torch.optim.SGD.step

    def spy(self: torch.optim.SGD, *args: Any, **kw: Any) -> Any:
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    lrs: dict[str, list[float]] = {}
    for schedule in ("onecycle", "constant"):
        seen.clear()
        model = create_model("cnn", num_classes=10, input_shape=data.input_shape)
        train(model, (data.train_x, data.train_y), (data.test_x, data.test_y),
              config=TrainConfig(epochs=2, lr=0.05, schedule=schedule), progress=False)  # fmt: skip
        lrs[schedule] = list(seen)
    assert len(lrs["onecycle"]) == len(lrs["constant"]) == 6  # 2 epochs of 3 batches
    assert lrs["constant"] == [0.05] * 6
    assert max(lrs["onecycle"]) == pytest.approx(0.05) and lrs["onecycle"][-1] < 0.05 * 0.2


def test_devices_are_resolved_or_refused_in_one_line() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda", "mps")
    assert resolve_device("auto") == resolve_device(None)
    with pytest.raises(BackmarkError, match=r"^device must be one of auto, cpu, cuda, mps, got 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackmarkError, match=r"^device cuda is not available on this machine"):
            resolve_device("cuda")


def test_options_are_checked() -> None:
    with pytest.raises(BackmarkError, match=r"^schedule must be one of"):
        TrainConfig(schedule="linear")  # type: ignore[arg-type]
    with pytest.raises(BackmarkError, match=r"^augment must be one of"):
        TrainConfig(augment="rotate")  # type: ignore[arg-type]


def test_bf16_autocast_trains(fashion_small: ImageDataset) -> None:
    data = fashion_small.subset(train=200, test=100, seed=0)
    model = create_model("cnn", num_classes=10, input_shape=data.input_shape)
    result = train(model, (data.train_x, data.train_y), (data.test_x, data.test_y),
                   config=TrainConfig(epochs=1, bf16=True), progress=False, device="cpu")  # fmt: skip
    assert result.history[0].train_loss > 0 and 0.0 <= result.test_acc <= 1.0
