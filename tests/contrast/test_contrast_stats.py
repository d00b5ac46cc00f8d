"""The contrast test's statistics on hand-made answers: counts, ranks and exact tails."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import pytest
import torch

from backmark.contrast import ContrastResult, sibling_tests
from backmark.contrast.stats import binomial_tail, probe_test, rank_test, score_test
from backmark.errors import BackmarkError
from backmark.verify.stats import rate_p_value_exact


def t(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


@pytest.mark.parametrize(
    ("k", "n", "q"), [(0, 5, 0.5), (3, 10, 0.5), (60, 100, 0.5), (30, 40, 0.55), (41, 40, 0.5)]
)
def test_binomial_tail_matches_the_exact_fraction(k: int, n: int, q: float) -> None:
    exact = 0.0 if k > n else float(rate_p_value_exact(k, n, Fraction(q).limit_denominator(1000)))
    assert binomial_tail(k, n, q) == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_binomial_tail_stays_finite_for_large_counts() -> None:
    p = binomial_tail(6000, 10000, 0.55)
    assert 0.0 < p < 1e-20


def test_binomial_tail_refuses_a_rate_outside_zero_one() -> None:
    with pytest.raises(BackmarkError, match="0 < q < 1"):
        binomial_tail(3, 10, 1.0)


def test_probe_test_pairs_probe_i_with_sibling_i_mod_k() -> None:
    deployed = t(0, 0, 0, 0)
    siblings = torch.stack([t(1, 0, 1, 0), t(0, 2, 0, 0)])  # probe 0, 2: sibling 0; probe 1, 3: sibling 1
    e = probe_test(deployed, siblings, t(1, 0, 0, 0), delta=0.0)
    assert (e.disagreements, e.sides_deployed, e.sides_siblings) == (3, 2, 1)


def test_probe_test_counts_sides_on_disagreements_only() -> None:
    deployed = t(0, 0, 0, 0, 1, 1)
    siblings = torch.stack([t(0, 1, 1, 1, 2, 1)])  # differ on probes 1..4
    suspect = t(5, 0, 0, 1, 3, 0)  # sides with deployed on 1, 2; with the sibling on 3; neither on 4
    e = probe_test(deployed, siblings, suspect, delta=0.0)
    assert (e.disagreements, e.sides_deployed, e.sides_siblings) == (4, 2, 1)
    assert e.rate == pytest.approx(2 / 3)
    assert e.p_value == pytest.approx(0.5)  # P[Bin(3, 1/2) >= 2]


def test_probe_test_margin_raises_the_p_value() -> None:
    deployed, siblings = torch.zeros(1000, dtype=torch.int64), torch.ones(1, 1000, dtype=torch.int64)
    suspect = torch.cat([torch.zeros(600, dtype=torch.int64), torch.ones(400, dtype=torch.int64)])
    strict = probe_test(deployed, siblings, suspect, delta=0.0)
    lenient = probe_test(deployed, siblings, suspect, delta=0.05)
    assert strict.p_value < 1e-9 < lenient.p_value < 1e-3
    assert probe_test(deployed, siblings, suspect, delta=0.1).p_value > 0.5


def test_probe_test_refuses_bad_margin_and_shapes() -> None:
    with pytest.raises(BackmarkError, match="delta"):
        probe_test(t(0), torch.stack([t(1)]), t(0), delta=0.5)
    with pytest.raises(BackmarkError, match="answers for"):
        probe_test(t(0, 1), torch.stack([t(1, 1)]), t(0), delta=0.0)


def test_rank_test_is_exact_and_counts_ties_against_the_claim() -> None:
    deployed = t(0, 0, 0, 0)
    siblings = torch.stack([t(1, 0, 0, 0), t(0, 2, 0, 0), t(0, 0, 3, 0)])
    copy = t(0, 0, 0, 9)
    r = rank_test(deployed, siblings, copy)
    assert r.contested == 3 and r.agreement == (3, 2, 2, 2) and r.rank == 1 and r.p_value == 0.25
    tie = rank_test(deployed, siblings, t(1, 2, 0, 0))  # agrees with two siblings and ties the deployed
    assert tie.rank == 3 and tie.p_value == pytest.approx(0.75)


def test_the_log10_tail_matches_the_tail_and_stays_finite_where_it_underflows() -> None:
    from backmark.contrast.stats import log10_binomial_tail

    for k, n, q in ((30, 100, 0.1), (600, 1000, 0.55), (1, 5, 0.5), (0, 10, 0.3)):
        assert log10_binomial_tail(k, n, q) == pytest.approx(math.log10(binomial_tail(k, n, q)), abs=1e-9)
    tiny = log10_binomial_tail(5000, 5000, 0.55)  # 0.55 ** 5000 underflows a float
    assert binomial_tail(5000, 5000, 0.55) == 0.0
    assert tiny == pytest.approx(5000 * math.log10(0.55))
    assert log10_binomial_tail(6, 5, 0.5) == -math.inf


def test_sibling_tests_take_each_sibling_as_a_suspect_against_the_others() -> None:
    deployed = t(0, 0, 0, 0, 0, 0)
    siblings = torch.stack(
        [
            t(0, 0, 0, 1, 1, 1),
            t(1, 1, 1, 1, 1, 1),
            t(2, 2, 2, 2, 2, 2),
        ]
    )
    rates = tuple(e.rate for e in sibling_tests(deployed, siblings))
    # sibling 0 against siblings 1 and 2 (probe i paired with the other i mod 2: 1, 2, 1, 2, 1, 2): it
    # sides with deployed on probes 0-2 and with sibling 1 on probe 4; on 3 and 5 (paired with sibling 2)
    # it answers 1, neither side -> 3 of 4
    assert rates[0] == pytest.approx(3 / 4)
    assert rates[1] == pytest.approx(0.0)  # sides with sibling 0 on probe 4, never with the deployed model
    assert rates[2] == pytest.approx(0.5)  # never on either side: nothing decided, the test's 1/2
    assert sibling_tests(deployed, siblings[:1]) == ()  # one sibling: no other to compare it with


def test_a_family_whose_own_sibling_breaks_the_margin_says_so() -> None:
    deployed = t(*([0] * 200))
    copycat = t(*([0] * 150 + [1] * 50))  # a sibling that answers as the deployed model on most probes
    siblings = torch.stack([copycat, t(*([1] * 200)), t(*([2] * 200))])
    rates = tuple(e.rate for e in sibling_tests(deployed, siblings))
    assert max(rates) > 0.55
    result = ContrastResult(
        verified=False,
        p_value=1.0,
        alpha=1e-6,
        probe=probe_test(deployed, siblings, t(*([1] * 200)), delta=0.05),
        rank=rank_test(deployed, siblings, t(*([1] * 200))),
        kind="natural",
        nonce="00",
        queries=200,
        sibling_rates=rates,
    )
    assert not result.margin_holds_for_siblings
    figures = result.probe_figures()
    assert figures["sibling_rates"] == list(rates) and figures["margin_holds_for_siblings"] is False
    assert replace(result, sibling_rates=(0.4, 0.55)).margin_holds_for_siblings


def _scores(seed: int, n: int = 400, k: int = 5) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed))


def test_score_test_sides_with_the_model_whose_scores_the_suspect_has() -> None:
    a, sibs = _scores(0), torch.stack([_scores(1), _scores(2)])
    copy = score_test(a, sibs, a + 3.0, delta=0.1)  # the same scores up to a constant: the same centred
    assert (copy.sides_deployed, copy.sides_siblings, copy.rate) == (400, 0, 1.0)
    assert copy.p_value < 1e-12 and copy.log10_p_value < -12
    index = torch.arange(400)
    partner = sibs[index % 2, index]  # probe i against sibling i mod k
    other = score_test(a, sibs, partner, delta=0.0)
    assert (other.sides_deployed, other.sides_siblings) == (0, 400)


def test_score_test_of_an_independent_suspect_sits_near_one_half() -> None:
    a, sibs = _scores(0, n=4000), torch.stack([_scores(1, n=4000), _scores(2, n=4000)])
    e = score_test(a, sibs, _scores(3, n=4000), delta=0.05)
    assert abs(e.rate - 0.5) < 0.04 and e.p_value > 0.5
    assert e.disagreements == 4000 and e.sides_deployed + e.sides_siblings == 4000


def test_score_test_ignores_confidence() -> None:
    """A temperature leaves the count alone, and an unconfident innocent does not side with the least
    confident of the owner's models (it did under squared distance: the CI failure of stop 31)."""
    a, sibs = _scores(0, n=4000), torch.stack([_scores(1, n=4000), _scores(2, n=4000)])
    cooled = score_test(a, sibs, 0.1 * a, delta=0.1)
    assert (cooled.sides_deployed, cooled.sides_siblings) == (4000, 0)
    timid = score_test(0.3 * a, 3.0 * sibs, 0.1 * _scores(3, n=4000), delta=0.05)
    assert abs(timid.rate - 0.5) < 0.04 and timid.p_value > 0.5
    uniform = score_test(a, sibs, torch.zeros(4000, 5), delta=0.0)
    assert uniform.sides_deployed == uniform.sides_siblings == 0


def test_score_test_leaves_equal_distances_undecided_and_refuses_bad_input() -> None:
    a = _scores(0, n=10)
    same = score_test(a, torch.stack([a]), _scores(1, n=10), delta=0.0)  # the sibling is the deployed model
    assert same.sides_deployed == same.sides_siblings == 0 and same.disagreements == 0 and same.p_value == 1.0
    with pytest.raises(BackmarkError, match="suspect gave"):
        score_test(a, torch.stack([a]), _scores(1, n=10, k=4), delta=0.0)
    with pytest.raises(BackmarkError, match="sibling scores"):
        score_test(a, a, a, delta=0.0)
    with pytest.raises(BackmarkError, match="deployed scores"):
        score_test(a.argmax(1), torch.stack([a]), a, delta=0.0)
    bad = a.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(BackmarkError, match="NaN"):
        score_test(a, torch.stack([a]), bad, delta=0.0)
    with pytest.raises(BackmarkError):
        score_test(a, torch.stack([a]), a, delta=0.5)
