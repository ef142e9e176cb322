"""The live watch's policy (autarky/selfmod/live_watch.py, issue 30 item 2): a promoted version's live counts
against the incumbent's before the promotion; "regressed" only on a significant drop beyond the tolerance,
"not enough evidence yet" on a handful of data points. The statistics are checked against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import optimize, stats

from autarky.selfmod.live_watch import (
    MIN_EVENTS,
    MIN_TRIALS,
    LiveCounts,
    live_regression,
    poisson_ratio_p,
    ratio_score_p,
)

APPROVED = "approved share of the items called relevant"
ALERTS = "anomaly alerts per metric-day"


def share(approved: int, judged: int, pending: int = 0) -> LiveCounts:
    return LiveCounts(metric=APPROVED, kind="proportion", events=approved, exposure=judged, pending=pending)


def alerts(count: int, metric_days: float) -> LiveCounts:
    return LiveCounts(
        metric=ALERTS, kind="rate", better="lower", events=count, exposure=metric_days, unit="metric-days"
    )


def scipy_score_p(x1: int, n1: int, x0: int, n0: int, ratio: float) -> float:
    """The Farrington-Manning statistic with its constrained MLE found numerically by scipy."""

    def nll(q: float) -> float:
        terms = [(x1, ratio * q), (n1 - x1, 1 - ratio * q), (x0, q), (n0 - x0, 1 - q)]
        return -sum(k * math.log(p) for k, p in terms if k)

    q0 = optimize.minimize_scalar(
        nll, bounds=(1e-12, min(1.0, 1 / ratio) - 1e-12), method="bounded", options={"xatol": 1e-13}
    ).x
    q1 = ratio * q0
    z = (x1 / n1 - ratio * x0 / n0) / math.sqrt(q1 * (1 - q1) / n1 + ratio**2 * q0 * (1 - q0) / n0)
    return float(stats.norm.cdf(z))


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "ratio"),
    [
        (12, 40, 30, 50, 0.9),
        (30, 40, 30, 50, 0.9),
        (5, 25, 40, 60, 0.8),
        (1, 30, 3, 200, 1.0),
        (29, 30, 25, 30, 0.95),
    ],
)
def test_the_score_test_matches_the_constrained_likelihood_computed_by_scipy(
    x1: int, n1: int, x0: int, n0: int, ratio: float
) -> None:
    assert ratio_score_p(x1, n1, x0, n0, ratio) == pytest.approx(
        scipy_score_p(x1, n1, x0, n0, ratio), rel=1e-6
    )


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), [(12, 40, 30, 50), (20, 45, 22, 50), (3, 25, 14, 30)])
def test_without_a_margin_the_score_test_is_the_pooled_two_proportion_test(
    x1: int, n1: int, x0: int, n0: int
) -> None:
    table = [[x1, n1 - x1], [x0, n0 - x0]]
    two_sided = stats.chi2_contingency(table, correction=False).pvalue
    one_sided = two_sided / 2 if x1 / n1 < x0 / n0 else 1 - two_sided / 2
    assert ratio_score_p(x1, n1, x0, n0, 1.0) == pytest.approx(one_sided, rel=1e-9)


@pytest.mark.parametrize(
    ("x1", "e1", "x0", "e0", "ratio", "better", "alternative"),
    [
        (30, 10.0, 20, 10.0, 1.1, "lower", "greater"),
        (40, 8.0, 10, 40.0, 1.2, "lower", "greater"),
        (2, 8.0, 10, 40.0, 1.0, "lower", "greater"),
        (3, 10.0, 20, 10.0, 0.9, "higher", "less"),
        (0, 3.0, 50, 30.0, 0.8, "higher", "less"),
    ],
)
def test_the_rate_test_is_scipys_exact_binomial_test_given_the_total(
    x1: int, e1: float, x0: int, e0: float, ratio: float, better: str, alternative: str
) -> None:
    pi0 = ratio * e1 / (ratio * e1 + e0)
    expected = stats.binomtest(x1, x1 + x0, pi0, alternative=alternative).pvalue
    assert poisson_ratio_p(x1, e1, x0, e0, ratio, better) == pytest.approx(expected, rel=1e-9)  # type: ignore[arg-type]


def test_the_score_test_holds_its_level_at_the_tolerated_drop() -> None:
    # Real approval shares at exactly the tolerated drop (0.9 × 60 %): a rollback there is a false one.
    rng = np.random.default_rng(30)
    n0, n1, p0, ratio, alpha = 80, 40, 0.6, 0.9, 0.05
    x0 = rng.binomial(n0, p0, size=4000)
    x1 = rng.binomial(n1, ratio * p0, size=4000)
    rejected = np.mean(
        [ratio_score_p(int(a), n1, int(b), n0, ratio) < alpha for a, b in zip(x1, x0, strict=True)]
    )
    assert rejected <= alpha + 0.015
    # And it sees a real drop to a share of 25 % most of the time.
    x1 = rng.binomial(n1, 0.25, size=1000)
    power = np.mean(
        [ratio_score_p(int(a), n1, int(b), n0, ratio) < alpha for a, b in zip(x1, x0[:1000], strict=True)]
    )
    assert power > 0.8


def test_the_rate_test_holds_its_level_at_the_tolerated_rise() -> None:
    rng = np.random.default_rng(31)
    e0, e1, rate, ratio, alpha = 28.0, 8.0, 1.0, 1.2, 0.05
    x0 = rng.poisson(rate * e0, size=4000)
    x1 = rng.poisson(ratio * rate * e1, size=4000)
    rejected = np.mean(
        [poisson_ratio_p(int(a), e1, int(b), e0, ratio) < alpha for a, b in zip(x1, x0, strict=True)]
    )
    assert rejected <= alpha  # exact and conditional: never above its level


def test_a_clear_drop_in_approvals_is_a_regression_with_its_figures() -> None:
    verdict = live_regression(share(45, 60), share(10, 40), tolerance=0.1, alpha=0.05)
    assert verdict.status == "regressed" and verdict.regressed
    assert verdict.p_value is not None and verdict.p_value < 0.05
    assert (verdict.baseline, verdict.after) == (0.75, 0.25)
    assert "10/40 (25.0%)" in verdict.reason and "45/60 (75.0%)" in verdict.reason
    assert "p = " in verdict.reason and "alpha 0.05" in verdict.reason


def test_a_drop_within_the_tolerance_holds() -> None:
    verdict = live_regression(share(60, 100), share(55, 100), tolerance=0.1)
    assert verdict.status == "holds" and not verdict.regressed
    assert "no significant drop" in verdict.reason


def test_the_tolerance_decides_between_the_same_counts() -> None:
    before, after = share(70, 100), share(52, 100)
    assert live_regression(before, after, tolerance=0.0).status == "regressed"
    assert live_regression(before, after, tolerance=0.3).status == "holds"


def test_three_data_points_never_roll_back() -> None:
    verdict = live_regression(share(45, 50), share(0, 3, pending=7), tolerance=0.1)
    assert verdict.status == "not_enough_evidence" and not verdict.regressed
    assert verdict.p_value is None
    assert "not enough evidence yet" in verdict.reason and "after 3" in verdict.reason
    assert "7 pending" in verdict.reason
    # A short baseline is no evidence either.
    assert live_regression(share(2, 3), share(0, 40), tolerance=0.1).status == "not_enough_evidence"
    # From MIN_TRIALS a side it is judged.
    assert live_regression(share(45, 50), share(0, MIN_TRIALS), tolerance=0.1).status == "regressed"


def test_an_alert_rate_that_rises_is_a_regression_and_one_that_falls_is_not() -> None:
    before = alerts(28, 28.0)  # one alert per metric-day
    rose = live_regression(before, alerts(40, 8.0), tolerance=0.2)
    assert rose.status == "regressed"
    assert "40 in 8 metric-days (5 per metric-day)" in rose.reason
    assert live_regression(before, alerts(6, 8.0), tolerance=0.2).status == "holds"
    assert live_regression(before, alerts(0, 8.0), tolerance=0.2).status == "holds"


def test_a_few_alerts_are_not_enough_evidence() -> None:
    verdict = live_regression(alerts(2, 28.0), alerts(MIN_EVENTS - 3, 1.0), tolerance=0.2)
    assert verdict.status == "not_enough_evidence"
    assert f"at least {MIN_EVENTS}" in verdict.reason


def test_counts_of_different_metrics_or_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="different metrics"):
        live_regression(share(40, 50), alerts(40, 8.0), tolerance=0.1)
    with pytest.raises(ValueError, match="tolerance"):
        live_regression(share(40, 50), share(30, 50), tolerance=1.5)
    with pytest.raises(ValidationError, match="successes out of"):
        share(41, 40)
    with pytest.raises(ValidationError, match="whole"):
        LiveCounts(metric=APPROVED, kind="proportion", events=1, exposure=2.5)


def test_all_or_nothing_on_both_sides_is_judged_without_dividing_by_zero() -> None:
    assert live_regression(share(0, 30), share(0, 30), tolerance=0.1).status == "holds"
    assert live_regression(share(30, 30), share(30, 30), tolerance=0.1).status == "holds"
    assert live_regression(share(30, 30), share(0, 30), tolerance=0.1).status == "regressed"
