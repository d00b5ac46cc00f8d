"""A LightningModule marked in a real lightning.Trainer run (CPU, small): every trigger learned, verified."""

from __future__ import annotations

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


def test_a_trainer_run_learns_every_trigger_and_verifies(fashion_small: ImageDataset) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = TensorDataset(fashion_small.train_x.float() / 255, fashion_small.train_y)
    loader = DataLoader(data, batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(0))
    module = Classifier()
    mark = MarkCallback(key=KEY, seed=0)
    trainer = _trainer(mark, epochs=2)
    trainer.fit(module, train_dataloaders=mark.wrap(loader))
    # 2 scheduled epochs, then the trigger phase's extra epochs until every trigger is answered
    assert mark.history[-1] == 1.0 and 1 <= mark.extra_epochs <= 10
    assert len(mark.history) == 2 + mark.extra_epochs and mark.history[0] < 1.0
    assert float(trainer.callback_metrics["trigger_acc"]) == 1.0
    assert trainer.current_epoch == 2 + mark.extra_epochs
    result = bm.verify(model=module, key=KEY)
    assert result.verified and result.evidence.matches == 100


def test_a_module_that_does_not_fit_is_refused_before_training(fashion_small: ImageDataset) -> None:
    data = TensorDataset(fashion_small.train_x[:100].float() / 255, fashion_small.train_y[:100])
    mark = MarkCallback(key=KEY)
    loader = mark.wrap(DataLoader(data, batch_size=50))
    with pytest.raises(BackmarkError, match="answers 7 classes but the key is for 10"):
        _trainer(mark, epochs=1).fit(Classifier(classes=7), train_dataloaders=loader)
    with pytest.raises(BackmarkError, match="has no training loader"):
        _trainer(MarkCallback(key=KEY), epochs=1).fit(Classifier(), train_dataloaders=DataLoader(data))
