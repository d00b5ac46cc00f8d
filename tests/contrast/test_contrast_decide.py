"""Preparing probes and deciding a suspect: each distinct image asked once, the counts as over every draw."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backmark.contrast import decide, draw_probes, prepare, probe_pool, probe_test
from backmark.data.dataset import ImageDataset
from backmark.errors import BackmarkError

NONCE = bytes(range(32))


class Counting(nn.Module):
    """A fixed 3-class model of the mean pixel (its weights set the answer) that counts the images it saw."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.head = nn.Linear(2, 3)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(3, 2, generator=gen) * 4)
            self.head.bias.copy_(torch.randn(3, generator=gen))
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        m = x.flatten(1).mean(1, keepdim=True)
        return self.head(torch.cat([m, m * m], 1))


def _pool(n: int = 40) -> torch.Tensor:
    return torch.stack([torch.full((1, 4, 4), 6 * v, dtype=torch.uint8) for v in range(n)])


def test_a_suspect_is_asked_each_distinct_probe_image_once() -> None:
    pool = _pool()
    deployed, siblings, suspect = Counting(0), [Counting(1), Counting(2)], Counting(3)
    prepared = prepare(deployed, siblings, pool=pool, nonce=NONCE, num_classes=3, probes=2000)
    assert deployed.seen == len(pool)  # 2000 draws from 40 images
    result = decide(suspect, prepared, delta=0.0, alpha=0.01)
    assert suspect.seen == len(pool) and result.queries == len(pool)
    # the same counts as asking every draw
    images = draw_probes(pool, kind="natural", count=2000, nonce=NONCE).float().div(255)
    with torch.no_grad():
        every = [m(images).argmax(1) for m in (deployed, *siblings, suspect)]
    expected = probe_test(every[0], torch.stack(every[1:3]), every[3], delta=0.0)
    assert result.probe == expected
    assert result.probe_figures()["queries"] == len(pool)


def test_the_probe_pool_is_the_test_split_or_every_image() -> None:
    x = _pool(10)
    data = ImageDataset(
        "toy", x[:7], torch.zeros(7, dtype=torch.int64), x[7:], torch.zeros(3, dtype=torch.int64), ("a",)
    )
    assert torch.equal(probe_pool(data), x[7:])
    assert torch.equal(probe_pool(data, "all"), x)
    with pytest.raises(BackmarkError, match="probe pool must be one of test, all"):
        probe_pool(data, "train")


class LabelsOnly:
    """A label-only target around a module (as a remote API is): no scores to read."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(images).argmax(1)


def test_a_model_suspect_is_also_tested_on_its_scores_each_test_at_half_alpha() -> None:
    pool = _pool()
    deployed, siblings = Counting(0), [Counting(1), Counting(2)]
    prepared = prepare(deployed, siblings, pool=pool, nonce=NONCE, num_classes=3, probes=2000)
    copy = Counting(0)  # the deployed model's own weights: its scores are the deployed model's
    result = decide(copy, prepared, delta=0.1, alpha=1e-6, score_delta=0.1)
    assert result.scores is not None and result.scores.rate == 1.0
    assert result.p_value == min(1.0, 2 * min(result.probe.p_value, result.scores.p_value))
    assert result.verified and result.log10 < -6
    assert "score p-value" in result.assumption
    assert result.probe_figures()["scores"]["sides_deployed"] == result.scores.sides_deployed
    # the same suspect behind labels only: the answers' test alone, at the whole alpha
    only = decide(LabelsOnly(copy), prepared, delta=0.1, alpha=1e-6)
    assert only.scores is None and only.p_value == only.probe.p_value
    assert only.probe == result.probe and "score p-value" not in only.assumption
    assert only.probe_figures()["scores"] is None


def test_a_model_suspect_of_another_class_count_is_refused() -> None:
    pool = _pool()
    prepared = prepare(Counting(0), [Counting(1)], pool=pool, nonce=NONCE, num_classes=3, probes=200)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    with pytest.raises(BackmarkError, match="one score per class"):
        decide(wide, prepared)


class RulesOut(nn.Module):
    """A defence that rules the top class out with an infinite score (as the OOD detector's second answer)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x)
        return logits.scatter(1, logits.argmin(1, keepdim=True), float("-inf"))


def test_scores_with_an_infinite_entry_leave_the_answers_test_alone() -> None:
    pool = _pool()
    prepared = prepare(
        Counting(0), [Counting(1), Counting(2)], pool=pool, nonce=NONCE, num_classes=3, probes=500
    )
    result = decide(RulesOut(Counting(0)), prepared, delta=0.1)
    assert result.scores is None and result.p_value == result.probe.p_value
    assert result.probe.sides_deployed > 0
