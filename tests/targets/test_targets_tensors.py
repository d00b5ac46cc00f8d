"""Layouts for non-PyTorch targets and the reading of their answers: whole batches or errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backmark.errors import BackmarkError
from backmark.targets.tensors import InputPlan, arrange, chunks, labels_from_output, plan_input


@pytest.mark.parametrize(
    ("shape", "layout", "batch"),
    [
        ([-1, 1, 28, 28], "NCHW", None),
        (["batch", 1, 28, 28], "NCHW", None),
        ([None, 28, 28, 1], "NHWC", None),
        ([1, 784], "FLAT", 1),
        ([8, 1, -1, -1], "NCHW", 8),
    ],
)
def test_plan_input_matches_the_declared_shape(shape: list[object], layout: str, batch: int | None) -> None:
    plan = plan_input(shape, (1, 28, 28), dtype="float32", what="m")  # type: ignore[arg-type]
    assert plan == InputPlan(layout=layout, dtype="float32", batch=batch)  # type: ignore[arg-type]


def test_plan_input_refuses_what_does_not_fit() -> None:
    with pytest.raises(BackmarkError, match=r"takes input shape \[-1, 3, 32, 32\], which fits none of NCHW"):
        plan_input([-1, 3, 32, 32], (1, 28, 28), dtype="float32", what="m")
    with pytest.raises(BackmarkError, match="takes int32 inputs"):
        plan_input([-1, 1, 28, 28], (1, 28, 28), dtype="int32", what="m")


def test_arrange_lays_out_and_keeps_the_key_bytes() -> None:
    pixels = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    images = pixels.float() / 255.0
    nhwc = arrange(images, InputPlan("NHWC", "uint8"))
    assert nhwc.dtype == np.uint8 and np.array_equal(nhwc, pixels.permute(0, 2, 3, 1).numpy())
    flat = arrange(images, InputPlan("FLAT", "float64"))
    assert flat.shape == (2, 60) and flat.dtype == np.float64
    assert np.array_equal(arrange(images, InputPlan("NCHW", "float32")), images.numpy())


def test_labels_from_scores_probabilities_and_labels() -> None:
    scores = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]], dtype=np.float32)
    assert labels_from_output(scores, batch=2, what="m").tolist() == [1, 0]
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    assert labels_from_output(probs, batch=2, what="m").tolist() == [1, 0]
    assert labels_from_output(np.array([[4], [2]]), batch=2, what="m").tolist() == [4, 2]
    assert labels_from_output(np.array([4.0, 2.0]), batch=2, what="m").dtype == torch.int64


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        (np.zeros((3, 10)), r"answered shape \[3, 10\] for a batch of 2"),
        (np.zeros((2, 10, 2)), "expected scores"),
        (np.array([0.5, 1.0]), "non-integer"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "not finite"),
        (np.array([True, False]), "bool"),
        (np.array(["a", "b"]), "<U1"),
        (np.float32(3.0), r"answered shape \[\]"),
    ],
)
def test_anything_but_one_answer_per_image_is_refused(output: np.ndarray, needle: str) -> None:
    with pytest.raises(BackmarkError, match=needle):
        labels_from_output(output, batch=2, what="m")


def test_chunks_cover_the_range() -> None:
    assert chunks(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert chunks(0, 3) == []
    with pytest.raises(BackmarkError, match="at least 1"):
        chunks(5, 0)
