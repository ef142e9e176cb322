"""Guardrails as tests (autarky.models.guardrails, issue 27 item 2): a late breach is caught within two
periods, a healthy challenger is not rolled back over a whole test (≤ the guardrails' α, against the old
raw-rate rule's 16–83 %), the slow-share, cost and absolute guardrails, and the edges.

The simulations draw binomial counts per period (numpy, test-only) and call the policy every period on a
sliding window, as the workflow does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autarky.models.ab_types import Guardrails
from autarky.models.guardrails import (
    WindowArm,
    check_level,
    configured_guardrails,
    critical_z,
    guardrail_breach,
    guardrail_headroom,
)

RAILS = Guardrails()  # defaults: error +2 points, slow share +5 points, cost +25 %, error rate ≤ 5 %; α = 1 %
COST = 0.01  # per call, the same for both arms unless a test says otherwise
P95 = 1000.0


def arm(calls: int, errors: int, slow: int | None = None, cost: float = COST, **kw: object) -> WindowArm:
    """An arm whose answered calls are slow at the incumbent's usual 5 % unless told, at a fixed cost."""
    answered = calls - errors
    return WindowArm(
        calls=calls,
        errors=errors,
        slow=round(0.05 * answered) if slow is None else slow,
        answered=answered,
        cost_sum=cost * calls,
        cost_sumsq=cost * cost * calls,
        p95_ms=P95 if answered else None,
        **kw,  # type: ignore[arg-type]
    )


def first_breaches(
    seed: int,
    runs: int,
    periods: int,
    challenger_rates: np.ndarray,  # per period
    incumbent_rate: float,
    calls: tuple[int, int],  # (challenger, incumbent) per period
    rails: Guardrails = RAILS,
    checks: int | None = None,
) -> list[int | None]:
    """For each run, the first period (0-based) at which `guardrail_breach` fires on the window, or None.
    Slow counts are drawn at 5 % for both arms (an A/A latency), costs are equal."""
    rng = np.random.default_rng(seed)
    n_c, n_i = calls
    errors_c = rng.binomial(n_c, np.broadcast_to(challenger_rates, (runs, periods)))
    errors_i = rng.binomial(n_i, incumbent_rate, size=(runs, periods))
    slow_c = rng.binomial(n_c - errors_c, 0.05)
    slow_i = rng.binomial(n_i - errors_i, 0.05)

    def window(counts: np.ndarray) -> np.ndarray:  # sums over the last `rails.window` periods
        total = np.cumsum(counts, axis=1)
        total[:, rails.window :] -= total[:, : -rails.window].copy()
        return total

    wc, wi, sc, si = window(errors_c), window(errors_i), window(slow_c), window(slow_i)
    found: list[int | None] = []
    for r in range(runs):
        first = None
        for t in range(periods):
            k = min(t + 1, rails.window)
            ch = arm(n_c * k, int(wc[r, t]), int(sc[r, t]))
            inc = arm(n_i * k, int(wi[r, t]), int(si[r, t]))
            if guardrail_breach(inc, ch, rails, checks or periods) is not None:
                first = t
                break
        found.append(first)
    return found


def old_rule_rollbacks(seed: int, runs: int, periods: int, rate: float, calls: int) -> float:
    """The shipped rule: the challenger's cumulative error rate above 5 % at any period with ≥ 20 calls."""
    errors = np.cumsum(np.random.default_rng(seed).binomial(calls, rate, size=(runs, periods)), axis=1)
    n = calls * np.arange(1, periods + 1)
    return float(((errors / n > 0.05) & (n >= 20)).any(axis=1).mean())


# ------------------------------------------------------------------------------ the error budget
def test_the_budget_is_split_over_checks_and_guardrails() -> None:
    assert configured_guardrails(RAILS) == 4
    assert check_level(RAILS, 2000) == pytest.approx(0.01 / 8000)
    assert critical_z(RAILS, 2000) == pytest.approx(4.708, abs=1e-3)
    # A week of one-minute periods costs a third of a standard error more, not a factor.
    assert critical_z(RAILS, 7 * 24 * 60) == pytest.approx(5.028, abs=1e-3)
    assert check_level(RAILS, 1999.5) == check_level(RAILS, 2000)  # max_duration / interval, rounded up
    with pytest.raises(ValueError, match="checks"):
        check_level(RAILS, 0)


# ------------------------------------------------------------------------------ late breach
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_late_breach_is_declared_within_two_periods(seed: int) -> None:
    """Errors jump from 2 % to 20 % after 20 healthy periods (8,000 challenger calls), 400 calls a period:
    the cumulative rate would still be under 3 % two periods later; the window's test fires."""
    start, periods = 20, 24
    rates = np.where(np.arange(periods) < start, 0.02, 0.20)
    found = first_breaches(seed, 100, periods, rates, 0.02, (400, 3600), checks=7 * 24 * 60)
    assert all(t is not None and start <= t <= start + 1 for t in found), found


def test_ninety_percent_errors_breach_in_one_period() -> None:
    healthy = arm(1600, 32)  # four healthy periods in the window
    incumbent = arm(18_000, 360)
    bad_period = arm(2000, 32 + 360)  # the fifth: 360 of 400 calls failed
    assert guardrail_breach(incumbent, healthy, RAILS, 10_080) is None
    breach = guardrail_breach(incumbent, bad_period, RAILS, 10_080)
    assert breach is not None and "error rate 19.6 % vs 2.0 % for the incumbent" in breach
    # The first period of a 1 % ramp: 20 calls, 18 failed.
    assert guardrail_breach(arm(2000, 40), arm(20, 18), RAILS, 10_080) is not None


def test_no_breach_before_min_calls() -> None:
    incumbent = arm(2000, 40)
    assert guardrail_breach(incumbent, arm(19, 19), RAILS, 100) is None
    assert guardrail_headroom(incumbent, arm(19, 19), RAILS) is None
    assert guardrail_breach(incumbent, arm(20, 20), RAILS, 100) is not None


def test_the_breach_names_rates_margin_evidence_and_setting() -> None:
    breach = guardrail_breach(arm(13_500, 270), arm(1500, 138), RAILS, 2000)
    assert breach is not None
    assert "error rate 9.2 % vs 2.0 % for the incumbent (+7.2 points > the 2.0-point margin" in breach
    assert "guardrails.max_error_increase, z = 6.9 ≥ 4.7" in breach
    assert "above the 5.0 % limit guardrails.max_error_rate (exact binomial p = " in breach


# ------------------------------------------------------------------------------ false rollbacks
@pytest.mark.slow
def test_a_healthy_challenger_is_not_rolled_back_over_a_whole_test() -> None:
    """2 % vs 2 % errors (and 5 % vs 5 % slow calls), 200 challenger calls a period, 400 runs of 2,000
    checked periods: false rollbacks ≤ the guardrails' α = 1 % + 2 Monte-Carlo standard errors (the
    issue's bar is 5 %). Measured: 0 of 400."""
    runs, periods = 400, 2000
    found = first_breaches(21, runs, periods, np.full(periods, 0.02), 0.02, (200, 1800))
    rolled_back = sum(t is not None for t in found) / runs
    assert rolled_back <= RAILS.alpha + 2 * math.sqrt(RAILS.alpha * (1 - RAILS.alpha) / runs)


@pytest.mark.slow
def test_far_fewer_false_rollbacks_than_the_old_raw_rule() -> None:
    """50 challenger calls a period (a 10 % share of 500), 2,000 periods: the old rule (cumulative rate
    above 5 % with ≥ 20 calls) against the new one on the same traffic, at true error rates of 2 / 3 /
    4 % (the incumbent at 2 %: 4 % is the least favourable point of the 2-point margin, where the new rule
    may spend at most its α = 1 %). Measured (seed 11): old 8.1 / 23.7 / 53.1 % of 4,000 runs; new 0 / 0 /
    0 % of 100 runs each (the issue saw 16–30 / 40–57 / 71–83 % with its ramp's smaller first periods)."""
    runs, periods, calls = 100, 2000, (50, 450)
    for rate, old_at_least in ((0.02, 0.05), (0.03, 0.15), (0.04, 0.40)):
        old = old_rule_rollbacks(11, 4000, periods, rate, calls[0])
        found = first_breaches(11, runs, periods, np.full(periods, rate), 0.02, calls)
        new = sum(t is not None for t in found) / runs
        assert old >= old_at_least, (rate, old)
        assert new <= RAILS.alpha + 2 * math.sqrt(RAILS.alpha * (1 - RAILS.alpha) / runs), (rate, new)


# ------------------------------------------------------------------------------ slow share and cost
def test_slow_share_breach_and_no_breach() -> None:
    incumbent = arm(9000, 180)  # 5 % of answered calls above its own p95
    slow = arm(1000, 20, slow=200)  # 20.4 % of answered calls slower than the incumbent's p95
    breach = guardrail_breach(incumbent, slow, RAILS, 2000)
    assert (
        breach is not None and "20.4 % of answered calls slower than the incumbent's p95 (1,000 ms)" in breach
    )
    assert "guardrails.max_slow_increase" in breach
    # 8 % slow is within the 5-point margin over the incumbent's 5 %.
    assert guardrail_breach(incumbent, arm(1000, 20, slow=78), RAILS, 2000) is None
    # Without an incumbent p95 (no answered call) the slow share is not judged.
    assert (
        guardrail_breach(arm(100, 100), slow, Guardrails(max_error_increase=None, max_error_rate=None), 100)
        is None
    )


def noisy_cost_arm(rng: np.random.Generator, calls: int, mean: float, errors: int = 0) -> WindowArm:
    """Lognormal costs per call (log-sd 0.8, skewed) with the given mean."""
    costs = rng.lognormal(math.log(mean) - 0.32, 0.8, size=calls)
    return WindowArm(calls, errors, 0, calls - errors, float(costs.sum()), float((costs**2).sum()), P95)


def test_a_much_dearer_challenger_breaches_the_cost_guardrail() -> None:
    rng = np.random.default_rng(5)
    rails = Guardrails(max_error_rate=None, max_error_increase=None, max_slow_increase=None)
    breach = guardrail_breach(
        noisy_cost_arm(rng, 9000, COST), noisy_cost_arm(rng, 1000, 1.6 * COST), rails, 2000
    )
    assert breach is not None and "guardrails.max_cost_increase" in breach and "> the 25% allowed" in breach


def test_a_challenger_within_the_cost_margin_is_not_rolled_back() -> None:
    """20 % dearer (within the 25 % allowed), skewed costs, 500 checks of fresh windows in each of 60 runs:
    no breach (the budget is 1 %)."""
    rails = Guardrails(max_error_rate=None, max_error_increase=None, max_slow_increase=None, window=1)
    rng = np.random.default_rng(6)
    breaches = sum(
        guardrail_breach(noisy_cost_arm(rng, 900, COST), noisy_cost_arm(rng, 100, 1.2 * COST), rails, 500)
        is not None
        for _ in range(60 * 500)
    )
    assert breaches == 0


def test_noiseless_costs_are_judged_by_their_sign_not_by_rounding() -> None:
    # Every call costs the same: exactly the 25 % allowed is no breach (whatever sumsq − sum²/n rounds to),
    # a cent more per hundred calls is.
    incumbent, rails = arm(9000, 0, cost=0.03811), Guardrails(max_error_rate=None)
    assert (
        guardrail_breach(incumbent, arm(1000, 0, cost=0.03811 * 1.25), rails, 2000) is None
    )  # rounds to +7e-18
    assert guardrail_breach(incumbent, arm(1000, 0, cost=0.03811 * 1.2501), rails, 2000) is not None


def test_a_free_incumbent_makes_any_cost_a_breach_that_names_the_setting() -> None:
    breach = guardrail_breach(arm(1000, 0, cost=0.0), arm(100, 0, cost=0.002), RAILS, 100)
    assert breach is not None and "from nothing" in breach and "guardrails.max_cost_increase" in breach
    assert (
        guardrail_breach(
            arm(1000, 0, cost=0.0), arm(100, 0, cost=0.002), Guardrails(max_cost_increase=None), 100
        )
        is None
    )


# ------------------------------------------------------------------------------ absolute limits
def test_the_absolute_error_limit_is_tested_not_read() -> None:
    rails = Guardrails(max_error_increase=None)
    incumbent = arm(9000, 1350)  # 15 %: the relative guardrail would not fire, the absolute limit does
    breach = guardrail_breach(incumbent, arm(1000, 150), rails, 2000)
    assert breach is not None and "above the 5.0 % limit guardrails.max_error_rate" in breach
    # 6 % over 1,000 calls is above 5 % as a raw rate, not as evidence.
    assert guardrail_breach(arm(9000, 540), arm(1000, 60), rails, 2000) is None


def test_the_absolute_p95_limit_needs_the_count_above_it() -> None:
    rails = Guardrails(max_p95_latency_ms=800.0)
    incumbent = arm(9000, 180)
    breach = guardrail_breach(incumbent, arm(1000, 20, over_p95_limit=200), rails, 2000)
    assert breach is not None and "p95 latency above the 800 ms limit guardrails.max_p95_latency_ms" in breach
    assert guardrail_breach(incumbent, arm(1000, 20, over_p95_limit=60), rails, 2000) is None
    with pytest.raises(ValueError, match="over_p95_limit"):
        guardrail_breach(incumbent, arm(1000, 20), rails, 2000)


def test_the_absolute_cost_limit() -> None:
    rails = Guardrails(max_cost_per_call=0.012)
    rng = np.random.default_rng(7)
    incumbent = noisy_cost_arm(rng, 9000, 0.02)  # relative guardrail quiet: same cost
    breach = guardrail_breach(incumbent, noisy_cost_arm(rng, 1000, 0.02), rails, 2000)
    assert breach is not None and "above the 0.012 limit guardrails.max_cost_per_call" in breach
    assert (
        guardrail_breach(
            incumbent,
            noisy_cost_arm(rng, 1000, 0.011),
            Guardrails(max_cost_per_call=0.012, max_cost_increase=None),
            2000,
        )
        is None
    )


def test_nothing_configured_never_breaches() -> None:
    rails = Guardrails(
        max_error_rate=None, max_error_increase=None, max_slow_increase=None, max_cost_increase=None
    )
    assert configured_guardrails(rails) == 0
    assert guardrail_breach(arm(100, 0), arm(100, 100), rails, 10) is None
    assert guardrail_headroom(arm(100, 0), arm(100, 100), rails) is None


# ------------------------------------------------------------------------------ headroom, inputs
def test_headroom_is_the_unused_share_of_the_nearest_allowance() -> None:
    incumbent = arm(9000, 180)  # 2 %
    assert guardrail_headroom(incumbent, arm(1000, 20), RAILS) == pytest.approx(0.6)  # 2 % of the 5 % limit
    assert guardrail_headroom(incumbent, arm(1000, 35), RAILS) == pytest.approx(0.25)  # +1.5 of 2 points
    assert guardrail_headroom(incumbent, arm(1000, 60), RAILS) == 0.0
    assert guardrail_headroom(incumbent, arm(1000, 10, cost=1.2 * COST), RAILS) == pytest.approx(0.2)


def test_window_arm_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="errors and answered"):
        WindowArm(10, 11, 0, 0, 0.0, 0.0, None)
    with pytest.raises(ValueError, match="slow"):
        WindowArm(10, 0, 11, 10, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="must be >= 0"):
        WindowArm(-1, 0, 0, 0, 0.0, 0.0, None)
    with pytest.raises(ValueError, match="cost"):
        WindowArm(10, 0, 0, 10, math.nan, 0.0, 1.0)
