"""The paired test for offline slots (autarky.models.paired, issue 27 item 9): McNemar's exact test and the
Clopper-Pearson interval against scipy, the issue's 176-example case, large counts in log space, and the
decision rule (significance at α/2 one-sided AND the estimate at least the minimum)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from autarky.models.paired import (
    binomial_cdf,
    binomial_sf,
    clopper_pearson,
    log_binomial_sf,
    mcnemar,
    mcnemar_one_sided,
    paired_decision,
)


@pytest.mark.parametrize(
    ("b", "c"),
    [(0, 0), (0, 1), (3, 3), (5, 12), (12, 5), (0, 30), (40, 61), (1000, 1100), (250_000, 251_500)],
)
def test_mcnemar_is_the_exact_binomial_test(b: int, c: int) -> None:
    expected = stats.binomtest(c, b + c, 0.5).pvalue if b + c else 1.0
    assert mcnemar(b, c) == pytest.approx(expected, rel=1e-9)
    if b + c:
        one_sided = stats.binomtest(c, b + c, 0.5, alternative="greater").pvalue
        assert mcnemar_one_sided(b, c) == pytest.approx(one_sided, rel=1e-9)


def test_thirty_discordant_pairs_all_for_the_challenger_give_the_issues_p() -> None:
    assert (
        mcnemar(0, 30) == pytest.approx(2 * 2**-30, rel=1e-12) == pytest.approx(1.9e-9, abs=0.05e-9)
    )  # the issue's p


def test_large_counts_neither_overflow_nor_underflow() -> None:
    # 10⁶ discordant pairs, 2 % apart: p far below a double's normal range is still a number, in log space.
    log_p = log_binomial_sf(510_000, 1_000_000, 0.5)
    assert log_p == pytest.approx(stats.binom.logsf(509_999, 1_000_000, 0.5), rel=1e-9)
    assert log_p < -190
    assert mcnemar(490_000, 510_000) == 0.0 or mcnemar(490_000, 510_000) < 1e-80
    assert binomial_cdf(10, 10**7, 0.5) == 0.0  # underflows to 0, not an error


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(0, 10, 0.3), (3, 10, 0.3), (7, 10, 0.3), (10, 10, 0.3), (40, 2000, 0.02), (80, 2000, 0.02)],
)
def test_binomial_tails_match_scipy(k: int, n: int, p: float) -> None:
    assert binomial_sf(k, n, p) == pytest.approx(stats.binom.sf(k - 1, n, p), rel=1e-9)
    assert binomial_cdf(k, n, p) == pytest.approx(stats.binom.cdf(k, n, p), rel=1e-9)


@pytest.mark.parametrize(("x", "n"), [(0, 10), (10, 10), (7, 20), (30, 30), (480, 1000)])
def test_clopper_pearson_matches_scipy(x: int, n: int) -> None:
    ci = stats.binomtest(x, n).proportion_ci(confidence_level=0.95, method="exact")
    lower, upper = clopper_pearson(x, n, 0.05)
    assert lower == pytest.approx(ci.low, abs=1e-10)
    assert upper == pytest.approx(ci.high, abs=1e-10)


def test_the_offline_case_is_settled_at_once() -> None:
    """176 labelled examples: the challenger fixes 30 the incumbent gets wrong and breaks none."""
    result = paired_decision(
        both_right=120, only_incumbent=0, only_challenger=30, both_wrong=26, alpha=0.05, min_improvement=0.10
    )
    assert result.decision == "better"
    assert result.p_value == pytest.approx(2 * 2**-30, rel=1e-12)
    assert result.relative_effect == pytest.approx(30 / 120)
    assert 0 < result.lower <= result.relative_effect <= result.upper
    assert "accuracy 85.2 % vs 68.2 % on the same 176 examples" in result.text
    assert "McNemar p = 1.9e-09: better" in result.text


def test_significant_but_below_the_minimum_is_not_better() -> None:
    # 1,000 examples, +6 % relative accuracy (0.53 vs 0.50), significant on 100 discordant pairs 65:35.
    result = paired_decision(465, 35, 65, 435, alpha=0.05, min_improvement=0.10)
    assert mcnemar_one_sided(35, 65) < 0.025
    assert result.relative_effect == pytest.approx(0.06)
    assert result.decision == "not_better" and "by less than 10.0 %" in result.text
    # The same data with a 5 % minimum is better: the minimum enters through the estimate.
    assert paired_decision(465, 35, 65, 435, alpha=0.05, min_improvement=0.05).decision == "better"


def test_a_large_estimate_without_significance_is_not_better() -> None:
    result = paired_decision(10, 1, 4, 5, alpha=0.05, min_improvement=0.10)  # +27 %, 5 discordant pairs
    assert result.relative_effect > 0.10 and result.p_value > 0.05
    assert result.decision == "not_better" and "no significant difference" in result.text
    assert result.lower < 0 < result.upper


def test_a_significantly_worse_challenger_is_worse() -> None:
    result = paired_decision(100, 25, 5, 46, alpha=0.05, min_improvement=0.10)
    assert result.decision == "worse"
    assert result.upper < 0 and result.relative_effect == pytest.approx(-20 / 125)


def test_the_interval_excludes_zero_exactly_when_the_one_sided_p_is_below_alpha_half() -> None:
    for b, c in [(5, 15), (6, 15), (7, 15), (8, 15), (20, 40), (21, 40)]:
        result = paired_decision(50, b, c, 10, alpha=0.05, min_improvement=1e-9)
        assert (result.lower > 0) == (mcnemar_one_sided(b, c) <= 0.025), (b, c)
        assert (result.decision == "better") == (result.lower > 0)


def test_edges_and_inputs() -> None:
    none = paired_decision(0, 0, 0, 0, alpha=0.05, min_improvement=0.1)
    assert none.decision == "not_better" and none.p_value == 1.0 and "no examples" in none.text
    # The incumbent got nothing right: the relative gain is infinite, still judged by McNemar.
    from_zero = paired_decision(0, 0, 12, 20, alpha=0.05, min_improvement=0.1)
    assert math.isinf(from_zero.relative_effect) and from_zero.decision == "better"
    with pytest.raises(ValueError, match="only_challenger"):
        paired_decision(1, 1, -1, 1, alpha=0.05, min_improvement=0.1)
    with pytest.raises(ValueError, match="min_improvement"):
        paired_decision(1, 1, 1, 1, alpha=0.05, min_improvement=0)
    with pytest.raises(ValueError, match="alpha"):
        paired_decision(1, 1, 1, 1, alpha=1.5, min_improvement=0.1)
