"""Every ``>>>`` example in backmark's docstrings runs and shows what it prints, so the examples stay true.

Each module under src/backmark that holds an example is run with :mod:`doctest`. The attack examples use
``marked`` (a small model of the ``cnn`` architecture), ``attacker_data`` and ``attacker_split`` (64 seeded
noise images of 1x28x28 in 10 classes): they show how each attack is called, on data small enough to run
in a second or two; what the attacks do to a real marked model is tested in tests/attacks.
"""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path
from typing import Any

import pytest
import torch

import backmark

SRC = Path(backmark.__file__).parent
MODULES = sorted(
    "backmark." + ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for p in SRC.rglob("*.py")
    if ">>>" in p.read_text()
)


def _names() -> dict[str, Any]:
    from backmark.attacks import AttackData
    from backmark.data import ImageDataset
    from backmark.models import create_model
    from backmark.verify import verify

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 1, 28, 28), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (96,), generator=gen)
    split = ImageDataset("doctest", images[:64], labels[:64], images[64:], labels[64:], tuple("0123456789"))
    torch.manual_seed(0)
    return {
        "marked": create_model("cnn", num_classes=10, input_shape=(1, 28, 28), width=4, hidden=16).eval(),
        "attacker_split": split,
        "attacker_data": AttackData.from_dataset(split),
        "AttackData": AttackData,
        "verify": verify,
    }


def test_the_examples_are_found() -> None:
    examples = 0
    for name in MODULES:
        for test in doctest.DocTestFinder().find(importlib.import_module(name)):
            examples += len(test.examples)
    assert len(MODULES) >= 20 and examples >= 29


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    torch.set_num_threads(1)
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = io.StringIO()
    for test in doctest.DocTestFinder().find(module):
        test.globs.update(_names())
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, out.getvalue()
