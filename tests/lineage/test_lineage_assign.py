"""The Hungarian matching finds the best matching, and permuting the suspect permutes it alike."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from backmark.lineage.assign import match


@pytest.mark.parametrize(("n", "m"), [(4, 4), (3, 5), (5, 3)])
def test_match_is_optimal(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 10 + m)
    for _ in range(20):
        sim = rng.normal(size=(n, m))
        got = match(sim)
        value = sum(sim[i, j] for i, j in enumerate(got) if j >= 0)
        if n <= m:
            best = max(sum(sim[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = max(sum(sim[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert value == pytest.approx(best)
        assert len({j for j in got if j >= 0}) == min(n, m)


def test_permuting_the_columns_permutes_the_matching() -> None:
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(30, 30))
    perm = rng.permutation(30)  # suspect unit j moves to position perm[j]
    moved = np.empty_like(sim)
    moved[:, perm] = sim
    assert np.array_equal(match(moved), perm[match(sim)])
