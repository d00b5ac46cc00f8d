"""docs/getting-started.md: its ``python`` blocks run, in order, on 2,000 Fashion-MNIST images.

Keys have 20 triggers here (the page makes 100) to keep the run short.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch

import backmark
from backmark.data import ImageDataset

PAGE = Path(__file__).parent.parent / "docs" / "getting-started.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def test_the_page_code_runs(
    fashion: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = blocks()
    assert len(code) == 4
    torch.set_num_threads(1)
    torch.manual_seed(0)
    small = fashion.subset(train=2000, test=500, seed=0)
    monkeypatch.setattr(backmark, "load_dataset", lambda spec: small)
    monkeypatch.setattr(backmark, "keygen", functools.partial(backmark.keygen, size=20))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "getting_started"}
    for block in code:
        exec(compile(block, str(PAGE), "exec"), namespace)
    assert (tmp_path / "mykey" / "marking-key.bmk").is_file() and (tmp_path / "marked.safetensors").is_file()
    out = capsys.readouterr().out
    assert "epoch 3: trigger accuracy" in out and "True 20 20 12 1e-20" in out
    assert namespace["checked"].verified  # type: ignore[attr-defined]
