"""A group-sequential A/B test (pure code, no I/O): a few planned looks, a hard maximum sample, fewer
samples on average than a fixed horizon; the other option beside the always-valid mixture design
(autarky.models.sequential), on the same log ratio of means (`log_ratio`, > 0 better).

Design (Jennison & Turnbull, "Group Sequential Methods", ch. 7 and 19): the statistic Z_k = θ̂ √I_k at
information I_k = 1 / var(θ̂), looks at planned fractions t_k of a maximum information I_max.
- Efficacy: "better" when Z_k >= e_k, the bounds spending the one-sided α/2 by Lan-DeMets' O'Brien-Fleming
  -like function α(t) = 2 − 2 Φ(z_{1−α/4} / √t): almost nothing early, so the last bound stays near a fixed
  test's.
- Futility: "not_better" when Z_k <= f_k, the bounds spending β = 1 − power under the minimum improvement
  δ by the Hwang-Shih-DeCani function β(t) = β (1 − e^{−γ t}) / (1 − e^{−γ}) (γ = `futility_gamma`). The
  workflow always stops there (binding in use), but by default the efficacy bounds are computed as if it
  did not ("non-binding", `binding=False`): then α/2 holds whatever happens to the futility stops and
  looks (reads that overshoot the planned fractions, skipped looks), and with them taken the A/A rate is
  about 2.1 %, a margin the normal approximation of a skewed metric needs (binding bounds measured 2.6-2.8
  % for lognormal latency, the fixed z-test itself ~2.6 %). It costs about 0.02x in mean samples.
- I_max is solved so the two bounds meet at the last look (f_K = e_K): every run ends by I_max with a
  decision, "better" under δ with chance 1 − β (the planned power).
- Information and the floor: looks are scheduled by the delta method's information 1 / s²_delta (a
  consistent estimate of 1 / var(θ̂) under any true difference); Z_k = θ̂ / s with s² the variance floored
  at the pooled one (`log_ratio_variances`), which protects the promotion side at unequal splits (issue 27
  item 7). Scheduling by the floored variance too made the test gather more information than planned at
  the default 10 % share (max(s²_delta, floor) is above both: at 10 % the floor rests on the large arm and
  the small arm's noisy s²_delta often exceeds it), about 0.05-0.08x more samples with power 83-85 %.
  Z with s² >= s²_delta is conservative for α; A/A stays within α/2 (tests/test_ab_error_rates.py).
- Defaults (10 looks, γ = −1) were chosen in simulation over binary 0.3 and lognormal log-sd 0.8 / 1.2 at
  50 % and 10 % shares (bench/abtest.py, tests/test_ab_error_rates.py): at effects 5 / 10 / 20 % mean
  samples of about 0.76-0.80 / 0.76-0.83 / 0.46-0.49x the fixed horizon, power 81-84 % at the minimum;
  the maximum is 1.2x. The binding cell is 5 % for lognormal at a 10 % share (6 or 8 looks: 0.80-0.81).
The bounds come from the recursive density on a grid (Armitage, McPherson & Rowe; J&T ch. 19), computed by
`plan_group_sequential` (numpy, in an activity: once per test). `evaluate_look` is pure Python and
deterministic (it runs in workflow code); it only compares Z with the stored bounds.

Decisions use the same notions as the mixture design and the fixed horizon: "better" is a significant
improvement (the repeated confidence interval's lower bound > 0 ⇔ Z >= e_k); "not_better" is futility (the
minimum improvement ruled out at the planned β); "worse" is a futility stop whose interval lies below 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from autarky.models.sequential import (
    ArmSummary,
    Decision,
    Direction,
    SequentialDesign,
    _text,
    log_effect,
    log_ratio_variances,
    relative_effect,
)

if TYPE_CHECKING:
    import numpy as np

_NORMAL = NormalDist()
DEFAULT_LOOKS = 10
DEFAULT_FUTILITY_GAMMA = -1.0  # with 10 looks: chosen in simulation (see the module docstring)


class GroupSequentialPlan(BaseModel):
    """The planned looks and their bounds on the Z scale; stored in workflow state (hence pydantic)."""

    model_config = ConfigDict(frozen=True)

    alpha: float = Field(gt=0, lt=0.5)  # two-sided, as SequentialDesign: "better" wrongly at most α/2
    power: float = Field(ge=0.5, lt=1)  # at the minimum improvement
    min_relative_improvement: float = Field(gt=0)
    direction: Direction
    min_samples: int = Field(ge=2)  # per arm before the first look
    looks: int = Field(ge=1)
    futility_gamma: float
    binding: bool  # efficacy bounds computed assuming every futility stop is taken (default False)
    fractions: list[float]  # t_k of max_information, increasing, the last 1
    efficacy: list[float]  # e_k: "better" when Z >= e_k
    futility: list[float]  # f_k: "not_better" when Z <= f_k; f_K = e_K
    max_information: float = Field(gt=0)  # 1 / variance of the log ratio at the last look
    fixed_information: float = Field(gt=0)  # a fixed-horizon test's, at the same α/2 and power

    @property
    def min_log_effect(self) -> float:
        return log_effect(self.min_relative_improvement, self.direction)

    def text(self) -> str:
        """E.g. "5 looks at 20/40/60/80/100 % of the information (max 1.17x a fixed horizon); better if
        Z >= 4.88/3.36/2.68/2.29/2.03, not better if Z <= ..."."""
        fractions = "/".join(f"{100 * t:.0f}" for t in self.fractions)
        return (
            f"{self.looks} looks at {fractions} % of the information (max "
            f"{self.max_information / self.fixed_information:.2f}x a fixed horizon); better if Z >= "
            + "/".join(f"{e:.2f}" for e in self.efficacy)
            + ", not better if Z <= "
            + "/".join(f"{f:.2f}" for f in self.futility)
        )


@dataclass(frozen=True)
class GroupSequentialResult:
    relative_effect: float  # > 0 is better; NaN when not estimable
    lower: float  # the repeated confidence interval (see `evaluate_look`), on the relative scale
    upper: float
    decision: Decision
    samples: int  # both arms together
    reason: str = field(default="", compare=False)
    look: int | None = None  # the look taken now (1-based), None when no look was due
    z: float = math.nan
    information_fraction: float = math.nan  # of max_information

    def text(self) -> str:
        """E.g. "+12.3 % [+4.1 %, +20.8 %] after 1,840 samples: better (look 2 of 5)"."""
        return _text(self.relative_effect, self.lower, self.upper, self.samples, self.decision) + (
            f" (look {self.look})" if self.look is not None else ""
        )


def evaluate_look(
    plan: GroupSequentialPlan, control: ArmSummary, treatment: ArmSummary, looks_done: int
) -> GroupSequentialResult:
    """The decision for the aggregates so far, `looks_done` looks having been taken before (pure Python).

    A look is due when the information 1 / s²_delta (the delta method's; see the module docstring) has
    reached the next planned fraction of max_information (and each arm has min_samples). When one read
    has passed several planned fractions, ONE look is taken, the last one passed, with its bounds (the
    skipped looks are not taken). That keeps α: with non-binding efficacy bounds (the default) a skipped
    look only removes a chance to cross, and
    tests/test_group_sequential.py integrates every pattern of skipped looks of the default plan (all
    within α/2). At or beyond max_information the last look is taken, where e_K = f_K: it always decides.

    lower/upper: the repeated confidence interval θ̂ ± c / √I with c the efficacy bound of the look taken
    (or of the next look when none is taken now), mapped to the relative scale: lower > 0 exactly when
    Z >= c, so "better" and "the interval excludes 0" agree (Jennison & Turnbull ch. 9; its coverage is
    exact for the efficacy bounds alone, approximate with binding futility).
    """
    samples = control.n + treatment.n
    if not 0 <= looks_done < plan.looks:
        raise ValueError(
            f"looks_done must be within [0, {plan.looks}) (looks of the plan), got {looks_done!r}"
        )
    estimate = log_ratio_variances(control, treatment, plan.direction)
    if estimate is None:
        return GroupSequentialResult(
            math.nan, -math.inf, math.inf, "continue", samples, "the log ratio of means is not estimable yet"
        )
    theta, variance, delta_variance = estimate
    d = plan.direction
    # The clock (which look is due) is the delta method's information; Z and the interval use the floored
    # variance (see the module docstring: "Information and the floor").
    fraction = (math.inf if delta_variance == 0 else 1 / delta_variance) / plan.max_information
    information = math.inf if variance == 0 else 1 / variance
    due = looks_done
    if min(control.n, treatment.n) >= plan.min_samples:
        # A tiny tolerance: information just short of a fraction by rounding is that fraction.
        while due < plan.looks and fraction >= plan.fractions[due] * (1 - 1e-9):
            due += 1
    if math.isinf(information):
        z = math.copysign(math.inf, theta) if theta else 0.0
    else:
        z = theta * math.sqrt(information)
    look = due if due > looks_done else None
    c = plan.efficacy[(look or looks_done + 1) - 1]
    w = 0.0 if math.isinf(information) else c / math.sqrt(information)
    lower, upper = relative_effect(theta - w, d), relative_effect(theta + w, d)
    effect = relative_effect(theta, d)
    if look is None:
        reason = (
            f"fewer than {plan.min_samples} observations in an arm"
            if min(control.n, treatment.n) < plan.min_samples
            else f"next look at {plan.fractions[looks_done]:.0%} of the information (now {fraction:.0%})"
        )
        return GroupSequentialResult(effect, lower, upper, "continue", samples, reason, None, z, fraction)
    e, f = plan.efficacy[look - 1], plan.futility[look - 1]
    decision: Decision
    if z >= e:
        decision, reason = "better", f"significantly better at look {look} (Z {z:.2f} >= {e:.2f})"
    elif z <= f:
        decision = "worse" if upper < 0 else "not_better"
        reason = (
            f"an improvement of {plan.min_relative_improvement:.1%} is ruled out at look {look} "
            f"(Z {z:.2f} <= {f:.2f})"
        )
    else:
        decision, reason = "continue", f"look {look}: Z {z:.2f} within ({f:.2f}, {e:.2f})"
    return GroupSequentialResult(effect, lower, upper, decision, samples, reason, look, z, fraction)


def expected_max_samples(
    plan: GroupSequentialPlan, baseline_mean: float, baseline_variance: float, share: float = 0.5
) -> tuple[int, int]:
    """(control, treatment): samples per arm at max_information when both arms have the baseline's mean
    and variance and the treatment gets `share` of the traffic; the test's hard maximum."""
    if not math.isfinite(baseline_mean) or baseline_mean <= 0:
        raise ValueError(f"baseline_mean must be finite and > 0, got {baseline_mean!r}")
    if not math.isfinite(baseline_variance) or baseline_variance < 0:
        raise ValueError(f"baseline_variance must be finite and >= 0, got {baseline_variance!r}")
    if not 0 < share < 1:
        raise ValueError(f"share must be within (0, 1), got {share!r}")
    # var(θ̂) = cv² (1 / (N (1 − share)) + 1 / (N share)) = 1 / I_max, solved for the total N.
    cv2 = baseline_variance / baseline_mean / baseline_mean
    total = plan.max_information * cv2 / (share * (1 - share))
    return max(2, math.ceil(total * (1 - share))), max(2, math.ceil(total * share))


# ---------------------------------------------------------------------------------- planning (numpy)
def plan_group_sequential(
    design: SequentialDesign,
    looks: int = DEFAULT_LOOKS,
    futility_gamma: float = DEFAULT_FUTILITY_GAMMA,
    binding: bool = False,
) -> GroupSequentialPlan:
    """Equally spaced looks, O'Brien-Fleming-like efficacy spending of α/2 (computed non-binding unless
    `binding`), Hwang-Shih-DeCani(γ) futility spending of β, and I_max solved so the bounds meet at the last
    look (numpy, about a second: an activity's job, never the workflow's)."""
    if isinstance(looks, bool) or not isinstance(looks, int) or not 1 <= looks <= 20:
        raise ValueError(f"looks must be an integer within [1, 20], got {looks!r}")
    if not math.isfinite(futility_gamma):
        raise ValueError(f"futility_gamma must be finite, got {futility_gamma!r}")
    fractions = [(k + 1) / looks for k in range(looks)]
    delta = design.min_log_effect
    fixed = (design.z_sum / delta) ** 2
    alpha1, beta = design.alpha / 2, 1 - design.power

    def gap(ratio: float) -> tuple[float, list[float], list[float]]:
        e, f = boundaries(fractions, ratio * fixed, alpha1, beta, delta, futility_gamma, binding)
        if any(math.isnan(b) for b in e + f) or any(fk >= ek for fk, ek in zip(f[:-1], e[:-1], strict=True)):
            return math.inf, e, f  # the bounds met before the last look: I_max is too large
        return f[-1] - e[-1], e, f

    # f_K − e_K grows with I_max; at the fixed horizon (ratio 1) it is <= 0, and a ratio of 3 is past any
    # sensible spending. Bisection: 30 steps to 2e-9 of the ratio.
    low, high = 1.0, 3.0
    if gap(high)[0] < 0:
        raise ValueError("no maximum information within 3x the fixed horizon: check futility_gamma")
    for _ in range(30):
        mid = (low + high) / 2
        if gap(mid)[0] < 0:
            low = mid
        else:
            high = mid
    _, efficacy, futility = gap(high)
    futility[-1] = efficacy[-1]  # equal to ~1e-9 by the bisection: exactly, so the last look decides
    return GroupSequentialPlan(
        alpha=design.alpha,
        power=design.power,
        min_relative_improvement=design.min_relative_improvement,
        direction=design.direction,
        min_samples=design.min_samples,
        looks=looks,
        futility_gamma=futility_gamma,
        binding=binding,
        fractions=fractions,
        efficacy=efficacy,
        futility=futility,
        max_information=high * fixed,
        fixed_information=fixed,
    )


def obf_spending(t: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming-like: 2 − 2 Φ(z_{1−α/2} / √t) of a one-sided α."""
    return 2 * (1 - _NORMAL.cdf(_NORMAL.inv_cdf(1 - alpha / 2) / math.sqrt(t))) if t > 0 else 0.0


def hsd_spending(t: float, total: float, gamma: float) -> float:
    """Hwang-Shih-DeCani: total · (1 − e^{−γ t}) / (1 − e^{−γ}); γ = 0 is linear."""
    if gamma == 0:
        return total * t
    return total * math.expm1(-gamma * t) / math.expm1(-gamma)


class _Grid:
    """The sub-density of Z_k on the continuation region of looks 1..k, under drift θ (numpy)."""

    def __init__(self, np_module, theta: float, points: int = 201) -> None:
        self.np, self.theta, self.points = np_module, theta, points
        self.z: np.ndarray | None = None  # grid of the previous look's continuation region
        self.w: np.ndarray | None = None  # Simpson weights × sub-density there
        self.info = 0.0

    def upper(self, b: float, info: float) -> float:
        """P(continued to the previous look, Z_k >= b) at look information `info`."""
        return self._tail(b, info, upper=True)

    def lower(self, b: float, info: float) -> float:
        return self._tail(b, info, upper=False)

    def _tail(self, b: float, info: float, upper: bool) -> float:
        np = self.np
        mean_shift = self.theta * math.sqrt(info)
        if self.z is None:
            p = _NORMAL.cdf(b - mean_shift)
            return 1 - p if upper else p
        d = info - self.info
        x = (b * math.sqrt(info) - self.z * math.sqrt(self.info) - self.theta * d) / math.sqrt(d)
        cdf = _phi_cdf(np, x)
        return float(np.sum(self.w * ((1 - cdf) if upper else cdf)))

    def advance(self, low: float, high: float, info: float) -> None:
        """Restrict to (low, high) at this look and move on to it."""
        np = self.np
        mu = self.theta * math.sqrt(info)
        lo, hi = max(low, mu - 9), min(high, mu + 9)
        if hi <= lo:  # nothing continues (the bounds meet): later probabilities are 0
            z, weights = np.array([lo]), np.zeros(1)
        else:
            z = np.linspace(lo, hi, self.points)
            h = (hi - lo) / (self.points - 1)
            weights = np.ones(self.points)
            weights[1:-1:2], weights[2:-1:2] = 4, 2
            weights *= h / 3
        if self.z is None:
            density = np.exp(-0.5 * (z - mu) ** 2) / math.sqrt(2 * math.pi)
        else:
            d = info - self.info
            scale = math.sqrt(info / d)
            u = (
                z[:, None] * math.sqrt(info) - self.z[None, :] * math.sqrt(self.info) - self.theta * d
            ) / math.sqrt(d)
            density = (np.exp(-0.5 * u * u) @ self.w) * scale / math.sqrt(2 * math.pi)
        self.z, self.w, self.info = z, weights * density, info


def _phi_cdf(np_module, x):
    """Φ(x) elementwise, through erfc's Chebyshev fit (Numerical Recipes' erfcc: relative error < 1.2e-7
    everywhere, so the small tails spent at early looks keep their precision); numpy has no erf of its own,
    and Python's per element made a plan take seconds."""
    np = np_module
    z = np.abs(x) / math.sqrt(2)
    t = 1 / (1 + 0.5 * z)
    poly = -1.26551223 + t * (
        1.00002368
        + t
        * (
            0.37409196
            + t
            * (
                0.09678418
                + t
                * (
                    -0.18628806
                    + t
                    * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))
                )
            )
        )
    )
    tail = 0.5 * t * np.exp(-z * z + poly)  # Φ(−|x|)
    return np.where(x >= 0, 1 - tail, tail)


def _solve(function, target: float, low: float = -12.0, high: float = 12.0) -> float:
    """b with function(b) = target for a monotone function (bisection: robust)."""
    f_low = function(low) - target
    if (f_low > 0) == (function(high) - target > 0):
        return math.nan  # out of reach: more to spend than continues (the plan's I_max is too large)
    for _ in range(45):  # 24 / 2^45: 1e-12
        mid = (low + high) / 2
        f_mid = function(mid) - target
        if (f_mid > 0) == (f_low > 0):
            low, f_low = mid, f_mid
        else:
            high = mid
    return (low + high) / 2


def boundaries(
    fractions: list[float],
    max_information: float,
    alpha: float,
    beta: float | None,
    delta: float,
    futility_gamma: float = DEFAULT_FUTILITY_GAMMA,
    binding: bool = True,
) -> tuple[list[float], list[float]]:
    """(efficacy, futility) z bounds: OBF-like spending of the one-sided `alpha` under θ = 0 and, unless
    `beta` is None (no futility: bounds of −inf), binding HSD spending of `beta` under θ = delta."""
    import numpy as np

    null, alt = _Grid(np, 0.0), _Grid(np, delta)
    efficacy: list[float] = []
    futility: list[float] = []
    spent_a = spent_b = 0.0
    for t in fractions:
        info = t * max_information
        a = obf_spending(t, alpha) - spent_a
        e = _solve(lambda b, i=info: null.upper(b, i), a) if a > 1e-15 else 12.0
        if beta is None:
            f = -math.inf
        else:
            b_spend = hsd_spending(t, beta, futility_gamma) - spent_b
            f = _solve(lambda b, i=info: alt.lower(b, i), b_spend) if b_spend > 1e-15 else -12.0
        if math.isnan(e) or math.isnan(f):  # spending out of reach: no valid bounds at this I_max
            missing = len(fractions) - len(efficacy)
            return efficacy + [math.nan] * missing, futility + [math.nan] * missing
        f = min(f, e)  # the bounds met early: stop here either way
        spent_a += null.upper(e, info)  # what was spent exactly (the solver's tolerance)
        spent_b += alt.lower(f, info) if beta is not None else 0.0
        efficacy.append(e)
        futility.append(f)
        null.advance(f if binding else -math.inf, e, info)
        alt.advance(f, e, info)
    return efficacy, futility


def crossing_probabilities(
    fractions: list[float], max_information: float, efficacy: list[float], futility: list[float], theta: float
) -> tuple[list[float], list[float]]:
    """(P(stop "better" at look k), P(stop "not better" at look k)) under drift θ (log scale), numpy."""
    import numpy as np

    grid = _Grid(np, theta)
    ups, downs = [], []
    for t, e, f in zip(fractions, efficacy, futility, strict=True):
        info = t * max_information
        ups.append(grid.upper(e, info))
        downs.append(grid.lower(f, info) if math.isfinite(f) else 0.0)
        grid.advance(f, e, info)
    return ups, downs
