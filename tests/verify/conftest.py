"""Fixtures for the verification tests: a key, and tiny models whose answers are known in advance."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from backmark.keys import MarkingKey, generate_key


class LookupModel(nn.Module):
    """Answers each known image with a chosen label (logits one-hot), unknown images with ``default``.

    It has buffers but no parameters, like a model whose weights were swapped for a table.
    """

    images: torch.Tensor
    answers: torch.Tensor

    def __init__(self, images: torch.Tensor, answers: torch.Tensor, outputs: int, default: int = 0) -> None:
        super().__init__()
        self.register_buffer("images", images.flatten(1).clone())
        self.register_buffer("answers", answers.clone())
        self.outputs, self.default = outputs, default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        equal = (x.flatten(1)[:, None, :] == self.images[None, :, :]).all(dim=2)  # (B, n): exact match
        index = equal.to(torch.int64).argmax(dim=1)
        labels = torch.where(equal.any(dim=1), self.answers[index], torch.full_like(index, self.default))
        return nn.functional.one_hot(labels, self.outputs).float() * 5.0 - 1.0


@pytest.fixture(scope="session")
def key100() -> MarkingKey:
    """The paper's setting: 100 triggers over 10 classes (1x8x8 noise images to stay fast)."""
    seed = hashlib.sha256(b"verify-key-100").digest()
    return generate_key(num_classes=10, input_shape=(1, 8, 8), size=100, kind="noise", seed=seed)


def lookup(mk: MarkingKey, answers: torch.Tensor, outputs: int | None = None) -> LookupModel:
    images, _ = mk.trigger_tensors()
    return LookupModel(images, answers.to(torch.int64), outputs or mk.num_classes)


@pytest.fixture(scope="session")
def make_lookup() -> object:
    """``make_lookup(mk, answers, outputs=None)``: a model answering trigger i with ``answers[i]``."""
    return lookup
