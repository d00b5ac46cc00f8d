"""Query a model in eval mode without changing how it was left: :func:`evaluating`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the ``with`` block, then give every submodule its own mode back.

    ``model.train(was_training)`` would not do: it sets every submodule to the same mode, so a model
    fine-tuned with some layers frozen in eval mode (batch-norm statistics kept) would come back with
    them training. The modes are restored on the way out whether or not the block raised.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
