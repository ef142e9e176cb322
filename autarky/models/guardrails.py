"""Guardrails as tests (pure code, no I/O; runs inside workflow code): is the challenger hurting the traffic
it serves, by more than a margin, with evidence that survives checking every period?

Each period the workflow aggregates both arms over the last `rails.window` evaluation periods (a sliding
window, not the cumulative totals: a breach that starts late must not be diluted by thousands of healthy
calls) and asks `guardrail_breach`. Each configured guardrail is a one-sided test of "the challenger is
worse than allowed"; the null hypothesis is the boundary of what is allowed:

- error rate      (max_error_increase, absolute): H0: p_c − p_i ≤ margin. Two-proportion z-test with the
                  Agresti-Caffo adjustment (one error and one success added per arm, so empty or full cells
                  keep a variance); errored calls include timeouts.
- slow share      (max_slow_increase, absolute): the share of the challenger's answered calls slower than the
                  INCUMBENT's p95 over the same window vs the incumbent's own share (~5 %, by construction);
                  the same two-proportion test. Errors are judged by the error guardrail, not here.
- cost per call   (max_cost_increase, relative): H0: μ_c ≤ (1 + m)·μ_i, tested on the linear contrast
                  μ̂_c − (1 + m)·μ̂_i with variance s_c²/n_c + (1 + m)²·s_i²/n_i (Fieller's device: no ratio
                  and no plug-in ratio in the variance, so a skewed cost does not narrow it); all calls count.
- absolute limits (max_error_rate, max_p95_latency_ms, max_cost_per_call), the challenger alone: an exact
                  binomial test that errors/calls exceeds the limit; an exact binomial test that more than 5 %
                  of the answered calls are slower than the p95 limit (p95 > limit ⇔ that share > 5 %; needs
                  `WindowArm.over_p95_limit`); a one-sample z-test of the mean cost against the limit.

The whole test's false-breach chance: every check is a test at level α' = rails.alpha / (checks · k), with
k the number of configured guardrails and `checks` the number of periods the guardrails will be checked
over the test (the workflow passes its planned periods). By the union (Bonferroni) bound the chance that
ANY guardrail falsely breaches at ANY period is ≤ rails.alpha, whatever the overlap of the sliding windows
and whatever the correlation between guardrails. Why not something sharper: the windows overlap, so the
checks are strongly correlated and the bound is loose in probability, but not in z: the normal tail is so
steep that the critical value grows only like sqrt(2 log(checks · k)) — 4.7 at 2,000 checks × 4 guardrails,
5.0 at a week of one-minute periods — and an exact max-of-correlated-windows boundary (a scan statistic)
would save ~0.3–0.5 standard errors at the price of an approximation whose error nobody could state.
The per-check z-tests hold their level: exact enumeration at the least favourable null (e.g. incumbent
2 %, challenger 4 %, margin 2 points) gives ≤ 2 % of the nominal tail at z ≈ 4.7 for 20–1,500 calls
(the binomial's right tail is light against a Wald statistic whose variance grows with the observed
rate); only error rates near 20 % at ~20 calls reach 1.4× the nominal, which the Bonferroni slack covers.

No guardrail breaches before the challenger has `rails.min_calls` calls in the window; the relative ones
need incumbent calls in the same window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from autarky.models.ab_types import Guardrails
from autarky.models.paired import log_binomial_sf

_NORMAL = NormalDist()
P95_SHARE = 0.05  # a p95 above the limit means more than this share of calls slower than the limit


@dataclass(frozen=True)
class WindowArm:
    """One arm's calls over the recent window."""

    calls: int
    errors: int  # failed calls, timeouts included
    slow: int  # answered calls slower than the INCUMBENT's p95 over the same window
    answered: int  # calls that returned (calls − errors, unless the caller counts otherwise)
    cost_sum: float  # over all calls, failed ones included
    cost_sumsq: float
    p95_ms: float | None  # None: no answered call
    # Answered calls slower than rails.max_p95_latency_ms; required when that limit is set.
    over_p95_limit: int | None = None

    def __post_init__(self) -> None:
        # One comparison chain: built every period for both arms (and millions of times in simulations).
        if min(self.calls, self.errors, self.slow, self.answered) < 0:
            raise ValueError(f"WindowArm: calls, errors, slow and answered must be >= 0 ({self})")
        if self.errors > self.calls or self.answered > self.calls:
            raise ValueError(f"WindowArm: errors and answered must not exceed calls ({self})")
        if self.slow > self.answered or (self.over_p95_limit or 0) > self.answered:
            raise ValueError(f"WindowArm: slow and over_p95_limit must not exceed answered ({self})")
        if not (math.isfinite(self.cost_sum) and math.isfinite(self.cost_sumsq) and self.cost_sumsq >= 0):
            raise ValueError(f"WindowArm: cost_sum and cost_sumsq must be finite, cost_sumsq >= 0 ({self})")

    @property
    def cost_mean(self) -> float:
        return self.cost_sum / self.calls if self.calls else 0.0

    @property
    def cost_variance(self) -> float:
        """The sample variance of the cost per call (n − 1; 0 for fewer than 2 calls)."""
        if self.calls < 2:
            return 0.0
        # Clamped: sumsq − sum²/n cancels to a tiny negative number when all costs are equal.
        return max(0.0, (self.cost_sumsq - self.cost_sum * self.cost_sum / self.calls) / (self.calls - 1))


def configured_guardrails(rails: Guardrails) -> int:
    """k: how many guardrails share the false-breach budget (fixed by the settings, not by the data)."""
    limits = (
        rails.max_error_increase,
        rails.max_slow_increase,
        rails.max_cost_increase,
        rails.max_error_rate,
        rails.max_p95_latency_ms,
        rails.max_cost_per_call,
    )
    return sum(limit is not None for limit in limits)


def check_level(rails: Guardrails, checks: float) -> float:
    """α': the level of one guardrail at one check (see the module: Bonferroni over checks × guardrails).
    A fractional number of checks (max_duration / evaluation_interval) is rounded up."""
    if isinstance(checks, bool) or not isinstance(checks, int | float) or not 1 <= checks < math.inf:
        raise ValueError(
            f"checks (the periods the guardrails are checked over the test) must be >= 1, got {checks!r}"
        )
    return rails.alpha / (math.ceil(checks) * max(1, configured_guardrails(rails)))


def critical_z(rails: Guardrails, checks: float) -> float:
    """The z a normal-approximation guardrail must reach to breach."""
    return -_NORMAL.inv_cdf(check_level(rails, checks))


def _adjusted(x: int, n: int) -> tuple[float, float]:
    """Agresti-Caffo: the rate with one success and one failure added, and its variance (an empty or full
    cell keeps a spread)."""
    a = (x + 1) / (n + 2)
    return a, a * (1 - a) / (n + 2)


def _z_proportions(x_c: int, n_c: int, x_i: int, n_i: int, margin: float) -> float:
    """Agresti-Caffo z for H0: p_c − p_i ≤ margin."""
    (a, var_a), (b, var_b) = _adjusted(x_c, n_c), _adjusted(x_i, n_i)
    return (a - b - margin) / math.sqrt(var_a + var_b)


def _z_contrast(estimate: float, variance: float, scale: float) -> float:
    """z of a linear contrast against 0; a noiseless contrast is decided by its sign. `scale`: the size of
    the means compared; rounding noise (relative 1e-12) in the estimate or the variance counts as 0."""
    if abs(estimate) <= 1e-12 * scale:
        estimate = 0.0
    if variance <= (1e-12 * scale) ** 2:
        return math.inf if estimate > 0 else -math.inf
    return estimate / math.sqrt(variance)


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _p(log_p: float, level: float) -> str:
    p = f"p = {math.exp(log_p):.2g}" if log_p > -700 else "p < 1e-300"  # exp underflows below ~e^-745
    return f"{p} ≤ {level:.2g}"


def _evidence(z: float, z_crit: float) -> str:
    return f"z = {z:.1f} ≥ {z_crit:.1f}" if math.isfinite(z) else "no noise at all"


def _relative_tests(
    incumbent: WindowArm, challenger: WindowArm, rails: Guardrails, z_crit: float
) -> list[str]:
    breaches = []
    inc, ch = incumbent, challenger
    if rails.max_error_increase is not None and inc.calls:
        m = rails.max_error_increase
        z = _z_proportions(ch.errors, ch.calls, inc.errors, inc.calls, m)
        if z >= z_crit:
            p_c, p_i = ch.errors / ch.calls, inc.errors / inc.calls
            breaches.append(
                f"error rate {_pct(p_c)} vs {_pct(p_i)} for the incumbent ({100 * (p_c - p_i):+.1f} points > "
                f"the {100 * m:.1f}-point margin guardrails.max_error_increase, {_evidence(z, z_crit)}, "
                f"{ch.calls:,} calls)"
            )
    if rails.max_slow_increase is not None and inc.answered and ch.answered and inc.p95_ms is not None:
        m = rails.max_slow_increase
        z = _z_proportions(ch.slow, ch.answered, inc.slow, inc.answered, m)
        if z >= z_crit:
            s_c, s_i = ch.slow / ch.answered, inc.slow / inc.answered
            breaches.append(
                f"{_pct(s_c)} of answered calls slower than the incumbent's p95 ({inc.p95_ms:,.0f} ms) vs "
                f"{_pct(s_i)} for the incumbent ({100 * (s_c - s_i):+.1f} points > the {100 * m:.1f}-point "
                f"margin guardrails.max_slow_increase, {_evidence(z, z_crit)})"
            )
    if rails.max_cost_increase is not None and inc.calls:
        factor = 1 + rails.max_cost_increase
        estimate = ch.cost_mean - factor * inc.cost_mean
        variance = ch.cost_variance / ch.calls + factor * factor * inc.cost_variance / inc.calls
        z = _z_contrast(estimate, variance, max(ch.cost_mean, factor * inc.cost_mean))
        if z >= z_crit:
            rise = f"{ch.cost_mean / inc.cost_mean - 1:+.1%}" if inc.cost_mean > 0 else "from nothing"
            breaches.append(
                f"cost per call {ch.cost_mean:.6g} vs {inc.cost_mean:.6g} for the incumbent ({rise} > the "
                f"{rails.max_cost_increase:.0%} allowed by guardrails.max_cost_increase, "
                f"{_evidence(z, z_crit)})"
            )
    return breaches


def _absolute_tests(challenger: WindowArm, rails: Guardrails, level: float, z_crit: float) -> list[str]:
    breaches = []
    ch = challenger
    log_level = math.log(level)
    if rails.max_error_rate is not None and rails.max_error_rate < 1:
        limit = rails.max_error_rate
        # Exact: P(X ≥ errors | calls, limit); 0 allowed errors make any error a certain breach. At or below
        # floor(calls · limit) (the median or below) the p-value is ≥ ½: no breach, no need to sum the tail.
        below_median = ch.errors <= math.floor(ch.calls * limit)
        log_p = (
            0.0 if below_median else log_binomial_sf(ch.errors, ch.calls, limit) if limit > 0 else -math.inf
        )
        if log_p <= log_level:
            breaches.append(
                f"error rate {_pct(ch.errors / ch.calls)} above the {_pct(limit)} limit "
                f"guardrails.max_error_rate (exact binomial {_p(log_p, level)}, {ch.calls:,} calls)"
            )
    if rails.max_p95_latency_ms is not None:
        if ch.over_p95_limit is None:
            raise ValueError(
                "guardrails.max_p95_latency_ms is set but WindowArm.over_p95_limit (answered calls slower "
                "than it) was not counted"
            )
        log_p = log_binomial_sf(ch.over_p95_limit, ch.answered, P95_SHARE)
        if ch.answered and log_p <= log_level:
            breaches.append(
                f"p95 latency above the {rails.max_p95_latency_ms:,.0f} ms limit "
                f"guardrails.max_p95_latency_ms: {_pct(ch.over_p95_limit / ch.answered)} of answered calls "
                f"slower than it (exact binomial {_p(log_p, level)} against {_pct(P95_SHARE)})"
            )
    if rails.max_cost_per_call is not None:
        limit = rails.max_cost_per_call
        z = _z_contrast(ch.cost_mean - limit, ch.cost_variance / ch.calls, max(ch.cost_mean, limit))
        if z >= z_crit:
            breaches.append(
                f"cost per call {ch.cost_mean:.6g} above the {limit:.6g} limit guardrails.max_cost_per_call "
                f"({_evidence(z, z_crit)})"
            )
    return breaches


def guardrail_breach(
    incumbent: WindowArm, challenger: WindowArm, rails: Guardrails, checks: int
) -> str | None:
    """The breached guardrails in words ("; "-separated), or None; see the module for the tests and the
    error budget. `checks`: the periods the guardrails are checked over the whole test (≥ 1)."""
    level = check_level(rails, checks)
    if challenger.calls < rails.min_calls or challenger.calls == 0:
        return None
    z_crit = -_NORMAL.inv_cdf(level)
    breaches = _relative_tests(incumbent, challenger, rails, z_crit) + _absolute_tests(
        challenger, rails, level, z_crit
    )
    return "; ".join(breaches) or None


# The margin counts what the challenger used less one standard error (84 % one-sided): two arms that answer
# alike show an excess of pure noise, which as a point estimate asked a person in 28-46 % of tests of 40-100
# calls (≤ 5 % now); a stricter bound (95 %) asked about a challenger at 8 % errors in 100 calls only 61 % of
# the time (84 % now). tests/test_promotion_margin.py holds both sides.
HEADROOM_Z = 1.0


def guardrail_headroom(
    incumbent: WindowArm, challenger: WindowArm, rails: Guardrails, z: float = 0.0
) -> float | None:
    """How far the challenger stays from the nearest guardrail: 1 − (used share of the allowance), clipped to
    [0, 1] (1: no worse than the incumbent / nothing of a limit used; 0: at or past a limit). An input of
    `promotion_risk`. `z`: the standard errors each excess and level is lowered by before it counts;
    `HEADROOM_Z` is the evidence (what was used, less that many standard errors), 0 the point estimates
    (promotions scored before release 30). The p95 limit counts its point estimate (a window keeps no
    spread of it). None: nothing to judge yet."""
    if challenger.calls < rails.min_calls or challenger.calls == 0:
        return None
    inc, ch = incumbent, challenger
    used: list[float] = []

    def share(excess: float, allowance: float) -> float:
        if allowance <= 0:
            return 1.0 if excess > 0 else 0.0
        return max(0.0, excess) / allowance

    if rails.max_error_increase is not None and inc.calls:
        se = math.sqrt(_adjusted(ch.errors, ch.calls)[1] + _adjusted(inc.errors, inc.calls)[1])
        excess = ch.errors / ch.calls - inc.errors / inc.calls - z * se
        used.append(share(excess, rails.max_error_increase))
    if rails.max_slow_increase is not None and inc.answered and ch.answered:
        se = math.sqrt(_adjusted(ch.slow, ch.answered)[1] + _adjusted(inc.slow, inc.answered)[1])
        excess = ch.slow / ch.answered - inc.slow / inc.answered - z * se
        used.append(share(excess, rails.max_slow_increase))
    if rails.max_cost_increase is not None and inc.calls:
        se = math.sqrt(ch.cost_variance / ch.calls + inc.cost_variance / inc.calls)
        excess = ch.cost_mean - inc.cost_mean - z * se
        used.append(share(excess, rails.max_cost_increase * inc.cost_mean))
    if rails.max_error_rate is not None:
        level = ch.errors / ch.calls - z * math.sqrt(_adjusted(ch.errors, ch.calls)[1])
        used.append(share(level, rails.max_error_rate))
    if rails.max_p95_latency_ms is not None and ch.p95_ms is not None:
        used.append(share(ch.p95_ms, rails.max_p95_latency_ms))
    if rails.max_cost_per_call is not None:
        level = ch.cost_mean - z * math.sqrt(ch.cost_variance / ch.calls)
        used.append(share(level, rails.max_cost_per_call))
    if not used:
        return None
    return min(1.0, max(0.0, 1.0 - max(used)))
