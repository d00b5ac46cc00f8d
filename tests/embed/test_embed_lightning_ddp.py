"""MarkCallback on two CPU processes (``strategy="ddp"``, gloo): each its share, every trigger learned.

Lightning's DDP launcher starts the other process by running the same command again, so the run is a
script of its own in a subprocess (under pytest it would start pytest again). Each process writes what
it saw; both must have trained the same epochs (the trigger phase is decided by rank 0's figure, so a
process never waits alone) on their own half of the data, and the model must verify.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")

SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = """
import json
import sys
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import backmark as bm
from backmark.keys import generate_key
from backmark.lightning import MarkCallback


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


out = Path(sys.argv[1])
torch.set_num_threads(1)
torch.manual_seed(0)
data = bm.load_dataset("fashion-mnist").subset(train=3000, test=100, seed=0)
images = TensorDataset(data.train_x.float() / 255, data.train_y)
key = generate_key(num_classes=10, input_shape=(1, 28, 28), size=20, seed=bytes(32))
mark = MarkCallback(key=key, seed=0)
trainer = L.Trainer(
    accelerator="cpu", devices=2, max_epochs=2, callbacks=[mark], logger=False,
    strategy=DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=120)),
    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
)
sampler = DistributedSampler(images, num_replicas=trainer.world_size, rank=trainer.global_rank, seed=0)
loader = DataLoader(images, batch_size=50, sampler=sampler)
trainer.fit(Classifier(), train_dataloaders=mark.wrap(loader))
result = bm.verify(model=trainer.lightning_module, key=key)
(out / f"rank{trainer.global_rank}.json").write_text(json.dumps({
    "world_size": trainer.world_size, "history": mark.history, "extra": mark.extra_epochs,
    "epochs": trainer.current_epoch, "batches": len(loader), "verified": result.verified,
    "matches": result.evidence.matches, "shuffles": sampler.epoch,
}))
"""


@pytest.mark.timeout(420)
def test_two_processes_mark_one_model(tmp_path: Path) -> None:
    (tmp_path / "ddp_run.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("LOCAL_RANK", None)  # a fresh launch, whatever launched the tests
    proc = subprocess.run(
        [sys.executable, "ddp_run.py", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,  # the script's own deadline: gloo gives up on a missing peer after 120 s
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for seen in ranks:
        assert seen["world_size"] == 2 and seen["batches"] == 30  # each process its half: 1500 / 50
        assert seen["history"][-1] == 1.0 and seen["verified"] and seen["matches"] == 20
        assert seen["shuffles"] == seen["epochs"] - 1  # reshuffled every epoch
    assert ranks[0]["history"] == ranks[1]["history"] and ranks[0]["extra"] == ranks[1]["extra"]
    assert ranks[0]["epochs"] == ranks[1]["epochs"] == 2 + ranks[0]["extra"]
