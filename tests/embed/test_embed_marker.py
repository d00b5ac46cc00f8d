"""Marker: a user's own nn.Module in a plain loop of their own learns every trigger, and the checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import backmark as bm
from backmark.data import ImageDataset
from backmark.embed.marker import Marker
from backmark.errors import BackmarkError
from backmark.keys import generate_key


class TinyNet(nn.Module):
    """A user's own model (not a backmark architecture): float [0, 1] pixels in, logits out."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


KEY = generate_key(num_classes=10, input_shape=(1, 28, 28), size=100, seed=b"\x05" * 32)


def _loader(
    data: ImageDataset, *, batch: int = 50, scale: float = 255.0
) -> DataLoader[tuple[torch.Tensor, ...]]:
    x = data.train_x.float() / scale
    gen = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(x, data.train_y), batch_size=batch, shuffle=True, generator=gen)


def test_own_module_in_a_plain_loop_learns_every_trigger_and_verifies(fashion_small: ImageDataset) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    marker = bm.Marker(key=KEY, seed=0)
    model2, optimizer2, loader = marker.make_marked(
        module=model, optimizer=optimizer, data_loader=_loader(fashion_small)
    )
    assert model2 is model and optimizer2 is optimizer  # drop-in: the user's own objects
    assert loader.per_batch == 5 and len(loader) == 80  # 10% of the batch of 50; 4000 / 50 batches
    progress = [marker.trigger_accuracy()]
    for _ in range(2):  # the user's loop, unchanged
        for x, y in loader:
            assert len(x) == 55
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        progress.append(marker.trigger_accuracy())
    assert progress[0] < 0.25 < progress[2]  # chance is 0.1: the signal moves as the mark is learned
    assert model.training  # trigger_accuracy left the model as it was
    lr_before = optimizer.param_groups[0]["lr"]
    done = marker.finish()
    assert done.learned and done.trigger_acc == 1.0 and done.trigger_acc_before == progress[-1]
    assert 0 < done.rounds <= 40 and done.steps == done.rounds * 50
    assert optimizer.param_groups[0]["lr"] == lr_before and loader.per_batch == 5
    assert marker.finish().rounds == 0  # learned already: nothing to do
    result = bm.verify(model=model, key=KEY)
    assert result.verified and result.evidence.matches == 100
    test_x = fashion_small.test_x.float() / 255
    with torch.no_grad():
        acc = float((model(test_x).argmax(1) == fashion_small.test_y).float().mean())
    assert acc > 0.7  # 4000 images, 2 epochs: the task is learned beside the mark


def test_checks_refuse_what_does_not_fit_the_key(fashion_small: ImageDataset) -> None:
    loader = _loader(fashion_small)
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(BackmarkError, match="answers 7 classes but the key is for 10"):
        other = TinyNet(classes=7)
        Marker(key=KEY).make_marked(
            module=other, optimizer=torch.optim.SGD(other.parameters()), data_loader=loader
        )
    with pytest.raises(BackmarkError, match="updates none of the module's trainable parameters"):
        Marker(key=KEY).make_marked(
            module=net, optimizer=torch.optim.SGD(TinyNet().parameters()), data_loader=loader
        )
    with pytest.raises(BackmarkError, match=r"0\.\.255 pixels.*pass transform="):
        Marker(key=KEY).make_marked(module=net, optimizer=opt, data_loader=_loader(fashion_small, scale=1.0))
    wide = generate_key(num_classes=10, input_shape=(3, 32, 32), size=10, seed=b"\x06" * 32)
    with pytest.raises(BackmarkError, match="could not take the key's 3x32x32 triggers"):
        Marker(key=wide).make_marked(module=net, optimizer=opt, data_loader=loader)
    normalised = [(torch.randn(8, 1, 28, 28), torch.zeros(8, dtype=torch.int64))]
    wrapped = Marker(key=KEY).make_marked(module=net, optimizer=opt, data_loader=normalised).data_loader
    with pytest.raises(BackmarkError, match="normalised values"):
        next(iter(wrapped))  # a plain list has no dataset to look at: the first batch is checked
    ok = Marker(key=KEY, transform=lambda t: (t - 0.5) / 0.5)
    x, _ = next(iter(ok.make_marked(module=net, optimizer=opt, data_loader=normalised).data_loader))
    assert x.shape == (18, 1, 28, 28) and float(x[8:].min()) >= -1.0
    with pytest.raises(BackmarkError, match="triggers_per_batch must be at least 1"):
        Marker(key=KEY, triggers_per_batch=0)
    with pytest.raises(BackmarkError, match="call make_marked"):
        Marker(key=KEY).trigger_accuracy()
