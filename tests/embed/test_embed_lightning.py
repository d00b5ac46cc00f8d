"""A LightningModule marked in a real lightning.Trainer run (CPU, small): every trigger learned, verified."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import backmark as bm
from backmark.data import ImageDataset
from backmark.errors import BackmarkError
from backmark.keys import generate_key

L = pytest.importorskip("lightning")
PAGE = Path(__file__).parent.parent.parent / "docs" / "lightning.md"
from backmark.lightning import MarkCallback  # noqa: E402


class Classifier(L.LightningModule):
    """A user's LightningModule: its own network, loss and optimiser."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


KEY = generate_key(num_classes=10, input_shape=(1, 28, 28), size=100, seed=b"\x08" * 32)


def _trainer(mark: MarkCallback, epochs: int) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[mark],
    )


def test_the_docs_page_marks_a_module_in_a_trainer_run(
    fashion_small: ImageDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/lightning.md's code, run as written, on 4,000 images with a key of 20 triggers."""
    (code,) = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    monkeypatch.setattr(bm, "load_dataset", lambda spec: fashion_small)
    monkeypatch.setattr(bm, "keygen", functools.partial(bm.keygen, size=20))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "lightning_page"}
    exec(compile(code, str(PAGE), "exec"), namespace)
    mark, trainer = namespace["mark"], namespace["trainer"]
    # 2 scheduled epochs, then the trigger phase's extra epochs (if any) until every trigger is answered
    assert mark.history[-1] == 1.0 and len(mark.history) == 2 + mark.extra_epochs <= 12
    assert float(trainer.callback_metrics["trigger_acc"]) == 1.0
    assert trainer.current_epoch == 2 + mark.extra_epochs
    assert namespace["result"].verified and namespace["result"].evidence.matches == 20
    assert "True 20 20" in capsys.readouterr().out


def test_a_module_that_does_not_fit_is_refused_before_training(fashion_small: ImageDataset) -> None:
    data = TensorDataset(fashion_small.train_x[:100].float() / 255, fashion_small.train_y[:100])
    mark = MarkCallback(key=KEY)
    loader = mark.wrap(DataLoader(data, batch_size=50))
    with pytest.raises(BackmarkError, match="answers 7 classes but the key is for 10"):
        _trainer(mark, epochs=1).fit(Classifier(classes=7), train_dataloaders=loader)
    with pytest.raises(BackmarkError, match="has no training loader"):
        _trainer(MarkCallback(key=KEY), epochs=1).fit(Classifier(), train_dataloaders=DataLoader(data))
