"""Which answers are altered, to what, and how the logits follow."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from response_helpers import images
from torch import nn

from backmark.response import ResponseKey, ResponseMark, generate_response_key, quantise


def test_deterministic_and_quantised(rkey: ResponseKey, model: nn.Module) -> None:
    mark = ResponseMark(rkey, num_classes=10)
    x = images(400)
    logits = model(x).detach()
    first = mark.apply(x, logits, logits.argmax(1))
    # the same pixels sent again, or nudged below half a grey level, get the same answers
    again = mark.apply(x + 0.4 / 255, logits, logits.argmax(1))
    assert torch.equal(first[1], again[1])
    assert [a.digest for a in first[2]] == [a.digest for a in again[2]]
    assert np.array_equal(quantise(x + 0.4 / 255), quantise(x))


def test_rate_close_to_r_and_labels_uniform_never_the_answer() -> None:
    key = generate_response_key(rate="0.2", secret=b"\x01" * 32)
    mark = ResponseMark(key, num_classes=10)
    pixels = np.random.default_rng(0).integers(0, 256, (20000, 1, 4, 4), dtype=np.uint8)
    served = 3
    given = [mark.altered_label(p, served) for p in pixels]
    altered = [g for g in given if g is not None]
    # Binomial(20000, 0.2): sd about 57; 5 sd either side
    assert abs(len(altered) - 4000) < 285
    assert served not in altered
    counts = Counter(altered)
    assert sorted(counts) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    expected = len(altered) / 9
    chi2 = sum((counts[c] - expected) ** 2 / expected for c in counts)
    assert chi2 < 31.8  # the 1 - 1e-4 quantile of chi-square with 8 degrees of freedom


def test_other_key_alters_other_images() -> None:
    a = ResponseMark(generate_response_key(rate="0.2", secret=b"\x01" * 32), num_classes=10)
    b = ResponseMark(generate_response_key(rate="0.2", secret=b"\x02" * 32), num_classes=10)
    pixels = np.random.default_rng(1).integers(0, 256, (2000, 1, 4, 4), dtype=np.uint8)
    ia = {i for i, p in enumerate(pixels) if a.altered_label(p, 0) is not None}
    ib = {i for i, p in enumerate(pixels) if b.altered_label(p, 0) is not None}
    # independent keys: about 0.2 * |ia| of a's altered images are altered by b too
    assert ia != ib and 0.1 * len(ia) < len(ia & ib) < 0.3 * len(ia)


def test_logits_consistent(rkey: ResponseKey, model: nn.Module) -> None:
    mark = ResponseMark(rkey, num_classes=10)
    x = images(400)
    logits = model(x).detach()
    labels = logits.argmax(1)
    new_logits, new_labels, altered = mark.apply(x, logits, labels)
    assert new_logits is not None and altered
    assert torch.equal(new_logits.argmax(1), new_labels)
    changed = {a.index for a in altered}
    for i in range(len(x)):
        if i in changed:
            assert new_labels[i] != labels[i]
            # the same values, permuted: a plausible distribution with the altered label on top
            assert torch.equal(new_logits[i].sort().values, logits[i].sort().values)
        else:
            assert torch.equal(new_logits[i], logits[i]) and new_labels[i] == labels[i]
    assert torch.equal(logits.argmax(1), labels)  # inputs untouched
