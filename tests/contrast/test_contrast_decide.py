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


class LearnedOnQueries:
    """A label-only copy that learned the deployed model's answers on the images it queried (by pixel
    value: the queried images' values are 3 mod 6) and answers as another model elsewhere."""

    def __init__(self, deployed: nn.Module, elsewhere: nn.Module) -> None:
        self.deployed, self.elsewhere = deployed, elsewhere

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            queried = (images.flatten(1)[:, 0] * 255).round().long() % 6 == 3
            return torch.where(queried, self.deployed(images).argmax(1), self.elsewhere(images).argmax(1))


def test_a_copy_trained_on_the_queried_images_is_shown_by_the_queried_count() -> None:
    pool, queried = _pool(), _pool() + 3  # the test images and the images the deployed model was asked
    deployed, siblings = Counting(0), [Counting(1), Counting(2)]
    prepared = prepare(
        deployed, siblings, pool=pool, nonce=NONCE, num_classes=3, probes=2000, queried=queried
    )
    q = prepared.queried
    assert q is not None and q.deployed_scores is not None and q.queried is None
    assert not torch.equal(q.probes.index, prepared.probes.index)  # drawn under their own tag
    copy = decide(LearnedOnQueries(deployed, Counting(3)), prepared, delta=0.05, alpha=1e-6)
    assert copy.scores is None and copy.queried is not None  # label-only: answers on both pools
    assert copy.queried.rate == 1.0 and copy.queried.sides_siblings == 0 and copy.probe.rate < 0.9
    assert copy.verified and copy.p_value == min(1.0, 2 * min(copy.probe.p_value, copy.queried.p_value))
    assert "queried p-value" in copy.assumption and "these 2 tests" in copy.assumption
    assert copy.probe_figures()["queried"]["rate"] == 1.0
    model = decide(Counting(3), prepared, delta=0.05, alpha=1e-6)  # a module: all three counts
    assert model.queried is not None and model.scores is not None and "these 3 tests" in model.assumption
    assert model.p_value == min(
        1.0, 3 * min(model.probe.p_value, model.scores.p_value, model.queried.p_value)
    )
    plain = decide(
        Counting(3), prepare(deployed, siblings, pool=pool, nonce=NONCE, num_classes=3, probes=200)
    )
    assert (
        plain.queried is None
        and plain.probe_figures()["queried"] is None
        and "these 2 tests" in plain.assumption
    )


def test_queried_images_of_another_shape_or_none_are_refused() -> None:
    deployed, siblings = Counting(0), [Counting(1)]
    with pytest.raises(BackmarkError, match="queried images are"):
        prepare(deployed, siblings, pool=_pool(), nonce=NONCE, num_classes=3, queried=torch.zeros(4, 1, 5, 5))
    with pytest.raises(BackmarkError, match="no queried images"):
        prepare(deployed, siblings, pool=_pool(), nonce=NONCE, num_classes=3, queried=_pool()[:0])
