"""Trigger matches per epoch when a user's own model trains in the user's own loop over a marked loader.

The user's side is what a PyTorch user writes: a small CNN of their own (not a backmark architecture), a
``DataLoader`` of float [0, 1] Fashion-MNIST images, SGD or Adam, cross-entropy. backmark's side is only
the wrapped loader, with ``k`` triggers appended to every batch. Prints one JSON line per (optimiser, k,
epoch): trigger matches out of 100 and test accuracy. Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/own_loop.py --train 20000 --epochs 3 --per-batch 2 5 10 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from backmark.data import load_dataset
from backmark.embed import mark_loader
from backmark.keys import generate_key


class UserCNN(nn.Module):
    """What a user might write: two conv blocks and a classifier, inputs float [0, 1]."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def matches(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    model.eval()
    with torch.no_grad():
        out = int((model(images).argmax(1) == labels).sum())
    model.train()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--per-batch", type=int, nargs="+", default=[2, 5, 10, 20])
    p.add_argument("--optimizers", nargs="+", default=["sgd", "adam"])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist").subset(train=args.train, test=2000, seed=args.seed)
    x = data.train_x.float() / 255
    test_x, test_y = data.test_x.float() / 255, data.test_y
    key = generate_key(num_classes=10, input_shape=(1, 28, 28), seed=bytes(32))
    images, labels = key.trigger_tensors()
    for opt_name in args.optimizers:
        for k in args.per_batch:
            torch.manual_seed(args.seed)
            model = UserCNN()
            if opt_name == "sgd":
                opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            else:
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            gen = torch.Generator().manual_seed(args.seed)
            loader = DataLoader(
                TensorDataset(x, data.train_y), batch_size=args.batch_size, shuffle=True, generator=gen
            )
            marked = mark_loader(loader, key, per_batch=k, seed=args.seed)
            for epoch in range(1, args.epochs + 1):
                start = time.perf_counter()
                for xb, yb in marked:
                    loss = F.cross_entropy(model(xb), yb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                row = {
                    "optimizer": opt_name,
                    "per_batch": k,
                    "epoch": epoch,
                    "matches": matches(model, images, labels),
                    "test_acc": round(matches(model, test_x, test_y) / len(test_y), 4),
                    "seconds": round(time.perf_counter() - start, 1),
                }
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
