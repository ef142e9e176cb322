"""The sample-ratio mismatch check (autarky.models.srm, issue 27 item 5): an honest split never mismatches
although it is checked every period on the cumulative counts (A/A, exact binomial assignment, 10 % and
50 % shares), a silently lost 5 % of the challenger's units is caught, and the statistics match scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from autarky.models.srm import log_mixture_ratio, sample_ratio_mismatch

RUNS, LOOKS, UNITS_PER_LOOK = 1000, 200, 500  # 100,000 units per run, looked at after every 500


def looks(seed: int, share: float, kept: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (incumbent, challenger) units at each look; `kept` of the challenger's units recorded."""
    rng = np.random.default_rng(seed)
    assigned = rng.binomial(UNITS_PER_LOOK, share, size=(RUNS, LOOKS))
    recorded = rng.binomial(assigned, kept) if kept < 1 else assigned
    return np.cumsum(UNITS_PER_LOOK - assigned, axis=1), np.cumsum(recorded, axis=1)


def ever_mismatched(incumbent: np.ndarray, challenger: np.ndarray, share: float, alpha: float) -> float:
    hits = 0
    for inc_row, ch_row in zip(incumbent, challenger, strict=True):
        hits += any(
            sample_ratio_mismatch(int(i), int(c), share, alpha).mismatch
            for i, c in zip(inc_row, ch_row, strict=True)
        )
    return hits / len(incumbent)


@pytest.mark.slow
@pytest.mark.parametrize(("share", "seed"), [(0.10, 1), (0.50, 2)])
def test_an_honest_split_rarely_mismatches_over_many_looks(share: float, seed: int) -> None:
    """1,000 A/A runs × 200 looks: the share of runs EVER flagged stays ≤ α (+ 2 standard errors) at a
    generous α = 5 %, where a chi-square test at 5 % on every look flags far more. Measured (10 % / 50 %
    share): mixture 3.1 % / 2.4 %, chi-square at every look 41 % / 42 %; at the default α = 0.001 the
    mixture flags none, the chi-square 1.9 % / 1.8 %."""
    incumbent, challenger = looks(seed, share)
    alpha = 0.05
    flagged = ever_mismatched(incumbent, challenger, share, alpha)
    assert flagged <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / RUNS)
    assert ever_mismatched(incumbent, challenger, share, 0.001) <= 0.001 + 2 * math.sqrt(0.001 / RUNS)
    # The naive check: a fixed-sample chi-square at the same α on every look.
    n = incumbent + challenger
    z = (challenger - n * share) / np.sqrt(n * share * (1 - share))
    naive = float((2 * stats.norm.sf(np.abs(z)) <= alpha).any(axis=1).mean())
    assert naive >= 4 * alpha


def test_a_challenger_that_loses_five_percent_of_its_units_is_caught() -> None:
    """10 % share, the challenger silently loses 5 % of its units (its share reads 9.55 %; z ≈ −5 by
    ~110,000 units), looked at after every 1,000 units: every one of 200 runs is caught, most by the time
    z ≈ −5. Measured (seed 3): median 70,000 units, 80 % by 110,000, all by 199,000."""
    rng = np.random.default_rng(3)
    caught_at = []
    for _ in range(200):
        assigned = rng.binomial(1000, 0.10, size=400)
        recorded = rng.binomial(assigned, 0.95)
        inc, ch = np.cumsum(1000 - assigned), np.cumsum(recorded)
        first = next(
            (k for k in range(400) if sample_ratio_mismatch(int(inc[k]), int(ch[k]), 0.10).mismatch), None
        )
        assert first is not None
        caught_at.append((first + 1) * 1000)
    assert np.median(caught_at) <= 100_000
    assert np.mean(np.array(caught_at) <= 110_000) >= 0.7
    # The case, as counts: z ≈ −5.1 is a mismatch at the default α = 0.001.
    result = sample_ratio_mismatch(99_510, 10_490, 0.10)
    assert result.z == pytest.approx(-5.1, abs=0.05)
    assert result.mismatch and result.p_value <= 0.001
    assert (
        "the challenger has 9.54 % of 110,000 units, 10.00 % expected (10,490 vs 11,000, z = -5.1)"
        in result.text
    )


def test_the_single_look_p_value_is_the_chi_square_test() -> None:
    for inc, ch, share in (
        (9000, 1000, 0.1),
        (8_950, 1_050, 0.1),
        (5_100, 4_900, 0.5),
        (99_510, 10_490, 0.1),
    ):
        result = sample_ratio_mismatch(inc, ch, share)
        n = inc + ch
        chi = stats.chisquare([inc, ch], [n * (1 - share), n * share])
        assert result.fixed_p_value == pytest.approx(chi.pvalue, rel=1e-6)
        assert result.z**2 == pytest.approx(chi.statistic, rel=1e-9)
        # The always-valid p is never below the single-look one: repeated looks cost evidence.
        assert result.p_value >= result.fixed_p_value


@pytest.mark.parametrize(
    ("x", "n", "share"), [(950, 10_000, 0.1), (0, 50, 0.1), (5_300, 10_000, 0.5), (12, 12, 0.01)]
)
def test_the_mixture_ratio_is_beta_binomial_over_binomial(x: int, n: int, share: float) -> None:
    expected = stats.betabinom.logpmf(x, n, 1000 * share, 1000 * (1 - share)) - stats.binom.logpmf(
        x, n, share
    )
    assert log_mixture_ratio(x, n, share) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_exact_counts_do_not_mismatch_and_inputs_are_checked() -> None:
    assert not sample_ratio_mismatch(0, 0, 0.1).mismatch
    result = sample_ratio_mismatch(900_000, 100_000, 0.1)
    assert not result.mismatch and result.z == 0 and result.p_value == 1.0
    with pytest.raises(ValueError, match="challenger_share"):
        sample_ratio_mismatch(10, 10, 1.0)
    with pytest.raises(ValueError, match="incumbent_units"):
        sample_ratio_mismatch(-1, 10, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        sample_ratio_mismatch(10, 10, 0.5, alpha=0)
