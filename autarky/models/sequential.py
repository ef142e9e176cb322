"""An always-valid sequential test for A/B tests of models (pure code, no I/O): may be read after every batch.

An A/B test compares an incumbent (control) and a challenger (treatment) on one metric, from aggregates
only: each arm is (n, mean, variance). The workflow reads them after every batch and asks `evaluate` for a
decision; peeking as often as it likes does not inflate the error rate, because the bounds form a
confidence sequence (valid at every n at once), not a fixed-n confidence interval. The group-sequential
design (autarky.models.group_sequential) is the other option: fewer samples on average and a hard maximum,
but decisions only at planned looks.

The effect tested is the log of the ratio of means, signed so that > 0 is better (`log_ratio`, shared by
both designs): θ = log(m_T / m_C) when higher is better, log(m_C / m_T) when lower is better, with the
delta method's variance s² = v_T / (n_T m_T²) + v_C / (n_C m_C²). It needs positive means (rates, latencies,
costs). Why the log: the relative difference's variance plugs in the estimated ratio, which is small exactly
when the challenger looks good on a skewed metric, so its interval was too narrow on the promotion side
(A/A false promotions of 3–8 % at a claimed 2.5 % for lognormal latency); on the log scale the two arms
enter symmetrically. Results are reported on the relative scale, > 0 better: exp(θ) − 1 for "higher" (the
challenger's mean is that much higher), 1 − exp(−θ) for "lower" (that much lower); both increase with θ,
so bounds map to bounds.

Method: the normal-mixture boundary (Robbins; the mSPRT of Johari et al., "Always valid inference", and
the asymptotic confidence sequences of Waudby-Smith et al. / Howard et al.). With θ̂ the estimate and s² its
variance, the mixture likelihood ratio against θ0, mixing θ − θ0 ~ N(0, τ²), is

    Λ = sqrt(s² / (s² + τ²)) · exp(τ² (θ̂ − θ0)² / (2 s² (s² + τ²)))

and {θ0 : Λ < 1/a} is the confidence sequence θ̂ ± w, with

    w² = s² (s² + τ²) / τ² · (2 log(1/a) + log(1 + τ² / s²)).

Ville's inequality bounds the chance that the true θ ever leaves it by a, each side about a/2 (asymptotically:
s² is the plug-in variance and θ̂ is only normal in the limit). τ² is fixed by the design: the boundary is
narrowest where a fixed-horizon test would stop for the minimum improvement δ (δ = log(1 + min) for
"higher", −log(1 − min) for "lower"; s_fix = δ / (z_{1−α/2} + z_power)); minimising w / s over x = τ² / s²
gives x = 2 log(1/α) + log(1 + x), about 8.2 at α = 0.05.

Decisions, the same notions as the group-sequential design and the fixed horizon (none before `min_samples`
per arm):
- better:     the lower bound (level α) is above 0: significantly better. Wrong under A/A at most α/2
              of the time: the one-sided level every design here claims.
- worse:      the upper bound (level α) is below 0: significantly worse (a guardrail).
- not_better: futility: the minimum improvement is ruled out at level β = 1 − power (the upper bound of the
              confidence sequence at level 2β, one side of which errs at most β), the level a fixed-horizon
              test with this power accepts "not better" at. Under a true effect of exactly the minimum the
              test therefore ends "not_better" at most β of the time: power ≥ the design's power.
- continue:   otherwise.
A real gain smaller than the minimum may be promoted (it is significant): the minimum sets the power, not
a second threshold (waiting for "estimate ≥ minimum" kept tests running near the minimum for long).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from functools import cached_property
from statistics import NormalDist
from typing import Literal

Direction = Literal["higher", "lower"]
Decision = Literal["continue", "better", "not_better", "worse"]

_NORMAL = NormalDist()


@dataclass(frozen=True)
class ArmSummary:
    """One arm's aggregates: the number of observations, their mean and their variance (for a binary
    metric p(1 − p); the sample variance with n − 1 is as good, the two differ by n / (n − 1))."""

    n: int
    mean: float
    variance: float

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, numbers.Integral) or self.n < 0:
            raise ValueError(f"n must be an integer >= 0, got {self.n!r}")
        if not math.isfinite(self.mean):
            raise ValueError(f"mean must be finite, got {self.mean!r}")
        if not math.isfinite(self.variance) or self.variance < 0:
            raise ValueError(f"variance must be finite and >= 0, got {self.variance!r}")

    @classmethod
    def from_successes(cls, n: int, successes: int) -> ArmSummary:
        """A binary metric's arm: `successes` out of `n`."""
        if not 0 <= successes <= n:
            raise ValueError(f"successes must be within [0, n = {n}], got {successes!r}")
        p = successes / n if n else 0.0
        return cls(n=n, mean=p, variance=p * (1 - p))


@dataclass(frozen=True)
class SequentialDesign:
    alpha: float = 0.05  # in (0, 0.5): two-sided; a wrong "better" at most α/2 of the time
    min_relative_improvement: float = 0.10  # > 0 (and < 1 for "lower": a metric cannot fall by 100 %)
    direction: Direction = "higher"  # which way is better
    power: float = 0.8  # in [0.5, 1): at the minimum improvement; sets futility and the fixed horizon
    min_samples: int = 100  # per arm before any decision (the normal approximation needs data)

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, int | float) and 0 < self.alpha < 0.5):
            raise ValueError(f"alpha must be within (0, 0.5), got {self.alpha!r}")
        m = self.min_relative_improvement
        if not (isinstance(m, int | float) and math.isfinite(m) and m > 0):
            raise ValueError(f"min_relative_improvement must be a finite number > 0, got {m!r}")
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"direction must be 'higher' or 'lower', got {self.direction!r}")
        if self.direction == "lower" and m >= 1:
            raise ValueError(
                f"min_relative_improvement must be < 1 when lower is better (a reduction), got {m!r}"
            )
        if not (isinstance(self.power, int | float) and 0.5 <= self.power < 1):
            raise ValueError(f"power must be within [0.5, 1), got {self.power!r}")
        if (
            isinstance(self.min_samples, bool)
            or not isinstance(self.min_samples, int)
            or self.min_samples < 2
        ):
            raise ValueError(f"min_samples must be an integer >= 2, got {self.min_samples!r}")

    @property
    def z_sum(self) -> float:
        """z_{1−α/2} + z_power: a fixed-horizon test's distance, in standard errors, from 0 to the minimum."""
        return _NORMAL.inv_cdf(1 - self.alpha / 2) + _NORMAL.inv_cdf(self.power)

    @property
    def min_log_effect(self) -> float:
        """δ: the minimum relative improvement on the log-ratio scale (> 0)."""
        return log_effect(self.min_relative_improvement, self.direction)

    @cached_property  # evaluated on every peek; the design is frozen
    def mixture_variance(self) -> float:
        """τ² on the log-ratio scale: the boundary is narrowest where a fixed-horizon test would stop."""
        a = 2 * math.log(1 / self.alpha)
        x = a
        for _ in range(50):  # x = a + log(1 + x) is a contraction (slope 1 / (1 + x) < 1/6)
            x = a + math.log1p(x)
        s_fix = self.min_log_effect / self.z_sum
        return x * s_fix * s_fix


@dataclass(frozen=True)
class SequentialResult:
    relative_effect: float  # > 0 is better (see the module); NaN when not estimable (see `log_ratio`)
    lower: float  # the confidence sequence for the relative effect (−inf / +inf when unknown)
    upper: float
    decision: Decision
    samples: int  # both arms together
    reason: str = field(default="", compare=False)  # why, in words

    def text(self) -> str:
        """E.g. "+12.3 % [+4.1 %, +20.8 %] after 1,840 samples: better"."""
        return _text(self.relative_effect, self.lower, self.upper, self.samples, self.decision)


def _text(effect: float, lower: float, upper: float, samples: int, decision: str) -> str:
    estimate = "n/a" if math.isnan(effect) else f"{_percent(effect)} [{_percent(lower)}, {_percent(upper)}]"
    return f"{estimate} after {samples:,} samples: {decision}"


def _percent(value: float) -> str:
    if math.isinf(value):
        return "-inf" if value < 0 else "+inf"
    return f"{100 * value:+.1f} %"


def log_effect(relative: float, direction: Direction) -> float:
    """A relative effect (> 0 better) on the log-ratio scale: log(1 + r) for "higher", −log(1 − r) for
    "lower" (a latency 10 % lower is log(1 / 0.9))."""
    return math.log1p(relative) if direction == "higher" else -math.log1p(-relative)


def relative_effect(theta: float, direction: Direction) -> float:
    """The inverse of `log_effect`: exp(θ) − 1 for "higher", 1 − exp(−θ) for "lower" (increasing in θ)."""
    try:
        return math.expm1(theta) if direction == "higher" else -math.expm1(-theta)
    except OverflowError:  # a bound of a very noisy estimate: beyond any float
        return math.inf if direction == "higher" else -math.inf


def log_ratio(control: ArmSummary, treatment: ArmSummary, direction: Direction) -> tuple[float, float] | None:
    """(θ̂, s²): the log of the ratio of means, > 0 better, and its delta-method variance
    v_T / (n_T m_T²) + v_C / (n_C m_C²), floored at the pooled one (see `log_ratio_variances`). None when
    not estimable: an arm with n < 2, a mean <= 0, or a result that is not finite (a mean so near 0 that s²
    overflows)."""
    estimate = log_ratio_variances(control, treatment, direction)
    return None if estimate is None else estimate[:2]


def log_ratio_variances(
    control: ArmSummary, treatment: ArmSummary, direction: Direction
) -> tuple[float, float, float] | None:
    """(θ̂, s², s²_delta): `log_ratio` with the delta method's variance alone beside the floored s².

    The floored s² standardises the statistic (it protects the promotion side); s²_delta estimates the
    information 1 / var(θ̂) under any true difference, so the group-sequential design schedules its looks by
    it (see autarky.models.group_sequential)."""
    if control.n < 2 or treatment.n < 2 or control.mean <= 0 or treatment.mean <= 0:
        return None
    theta = math.log(treatment.mean) - math.log(control.mean)
    if direction == "lower":
        theta = -theta
    # Divided step by step, so that a tiny mean overflows to inf rather than raising.
    delta = (
        treatment.variance / treatment.n / treatment.mean / treatment.mean
        + control.variance / control.n / control.mean / control.mean
    )
    # A floor: the same variance with both arms' data pooled (the variance under "no difference", as a
    # score test uses). Why: each arm's plug-in variance is small exactly when its mean looks good (a skewed
    # sample without its rare large values; a rate that came out high), so the delta method alone promoted
    # A/A tests 3-5 % of the time at a claimed 2.5 % when the challenger has a small share (10 %) of skewed
    # or binary data; the pooled estimate rests mostly on the larger arm. Under a real difference it is
    # about the true variance (equal CVs: scaled latencies) or a little larger (rates), costing some power.
    n = control.n + treatment.n
    pooled_mean = (control.n * control.mean + treatment.n * treatment.mean) / n
    between = control.n * treatment.n / n * (treatment.mean - control.mean) ** 2
    pooled_variance = (control.n * control.variance + treatment.n * treatment.variance + between) / n
    floor = pooled_variance / pooled_mean / pooled_mean * (1 / control.n + 1 / treatment.n)
    variance = max(delta, floor)
    if not (math.isfinite(theta) and math.isfinite(variance)):
        return None
    return theta, variance, delta


def half_width(variance: float, design: SequentialDesign, level: float | None = None) -> float:
    """w: the confidence sequence's half-width at `level` (two-sided; the design's α by default) for an
    estimate of this variance (0 for 0)."""
    if variance <= 0:
        return 0.0  # no noise at all: the boundary's limit as s² → 0
    tau2 = design.mixture_variance
    if math.isinf(tau2 / variance):
        return 0.0  # a subnormal variance: τ²/s² overflows (and 0 × inf is NaN); the limit is 0
    a = design.alpha if level is None else level
    return math.sqrt(
        variance * (variance + tau2) / tau2 * (2 * math.log(1 / a) + math.log1p(tau2 / variance))
    )


def evaluate(control: ArmSummary, treatment: ArmSummary, design: SequentialDesign) -> SequentialResult:
    """The relative effect, its always-valid bounds and the decision for the aggregates so far."""
    samples = control.n + treatment.n
    estimate = log_ratio(control, treatment, design.direction)
    if estimate is None:
        if control.n < 2 or treatment.n < 2:
            why = "fewer than 2 observations in an arm"
        elif control.mean == 0:
            why = "the control's mean is 0: no relative effect"
        elif min(control.mean, treatment.mean) <= 0:
            why = "a mean is not positive: the log ratio needs positive means"
        else:
            why = "a mean is too close to 0 for a relative effect"
        return SequentialResult(math.nan, -math.inf, math.inf, "continue", samples, why)
    theta, variance = estimate
    w = half_width(variance, design)
    lower, upper = theta - w, theta + w
    # Futility at level β on one side: the two-sided sequence at 2β (power 0.5: level 1, still a bound).
    futile = theta + half_width(variance, design, level=2 * (1 - design.power)) < design.min_log_effect
    minimum = design.min_relative_improvement
    if min(control.n, treatment.n) < design.min_samples:
        decision: Decision = "continue"
        reason = f"fewer than {design.min_samples} observations in an arm"
    elif upper < 0:
        decision, reason = "worse", "significantly worse (the upper bound is below 0)"
    elif lower > 0:
        decision, reason = "better", "significantly better (the lower bound is above 0)"
    elif futile:
        decision, reason = "not_better", f"an improvement of {minimum:.1%} is ruled out"
    else:
        decision, reason = "continue", "not yet significant either way"
    d = design.direction
    return SequentialResult(
        relative_effect(theta, d),
        relative_effect(lower, d),
        relative_effect(upper, d),
        decision,
        samples,
        reason,
    )


def fixed_horizon_samples(baseline_mean: float, baseline_variance: float, design: SequentialDesign) -> int:
    """Per arm at an equal split: a one-sided z-test of the log ratio at α/2 (the level every design here
    promotes at) with the design's power against the minimum improvement δ (log scale).

    n = (z_{1−α/2} + z_power)² · 2 σ² / (μ² δ²), both arms taken to have the baseline's mean and variance.
    """
    if not math.isfinite(baseline_mean) or baseline_mean <= 0:
        raise ValueError(
            f"baseline_mean must be finite and > 0 (the log ratio needs it), got {baseline_mean!r}"
        )
    if not math.isfinite(baseline_variance) or baseline_variance < 0:
        raise ValueError(f"baseline_variance must be finite and >= 0, got {baseline_variance!r}")
    cv2 = baseline_variance / baseline_mean / baseline_mean
    delta = design.min_log_effect
    return max(2, math.ceil(design.z_sum**2 * 2 * cv2 / (delta * delta)))
