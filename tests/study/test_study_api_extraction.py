"""The attacker's side: a real `backmark serve` subprocess, queried and copied several ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from response_helpers import SHAPE, images
from torch import nn

from backmark.errors import BackmarkError
from backmark.response import ResponseKey, ResponseLog, save_response_key
from backmark.study.api_extraction import Attacker, extract, query, serving_process, shifted, train


def test_shifted_moves_every_image() -> None:
    x = (images(20, seed=1) * 255).to(torch.uint8)
    y = shifted(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert all(not torch.equal(a, b) for a, b in zip(x, y, strict=True))


def test_unknown_attacker_is_refused() -> None:
    with pytest.raises(BackmarkError, match="unknown attacker"):
        Attacker("x", how="steal")


@pytest.mark.parametrize("loss", ["ce", "smooth", "mixup", "distill"])
def test_every_loss_trains(loss: str) -> None:
    from backmark.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, input_shape=SHAPE)
    x = (images(200, seed=2) * 255).to(torch.uint8)
    targets = torch.randn(200, 10) if loss == "distill" else torch.randint(0, 10, (200,))
    before = [p.detach().clone() for p in model.parameters()]
    train(model, x, targets, epochs=1, lr=0.05, loss=loss)
    assert not model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_extract_through_a_served_model(checkpoint: Path, rkey: ResponseKey, tmp_path: Path) -> None:
    path = save_response_key(rkey, tmp_path / "r.bmrk")
    db = tmp_path / "q.db"
    x = (images(400, seed=4) * 255).to(torch.uint8)
    truth = torch.randint(0, 10, (400,))
    with serving_process(checkpoint, path, db) as url:
        labels, logits = query(url, x, logits=True)
        assert logits is not None and logits.shape == (400, 10)
        assert torch.equal(logits.argmax(1), labels)  # altered answers stay consistent in the logits
        for how, sent in (("top1", 400), ("distill", 400), ("vote", 1200), ("agree", 400), ("finetune", 400)):
            a = Attacker(how, how=how, epochs=1, votes=3, labelled=200, finetune_epochs=1)
            copy, n = extract(url, a, x, truth, num_classes=10, seed=1)
            assert isinstance(copy, nn.Module) and n == sent, how
    log = ResponseLog(db, create=False)
    logged = log.read()
    log.close()
    assert 15 < len(logged) < 150  # rate 0.05 of 400 distinct images, plus the shifted copies of the vote
    with pytest.raises(BackmarkError, match="did not start"), serving_process(tmp_path / "m.pt", None, None):
        pass
