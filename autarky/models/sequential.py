"""An always-valid sequential test for A/B tests of models (pure code, no I/O): may be read after every batch.

An A/B test compares an incumbent (control) and a challenger (treatment) on one metric, from aggregates
only: each arm is (n, mean, variance). The workflow reads them after every batch and asks `evaluate` for a
decision; peeking as often as it likes does not inflate the error rate, because the bounds form a
confidence sequence (valid at every n at once), not a fixed-n confidence interval.

Method: the normal-mixture boundary (Robbins; the mSPRT of Johari et al., "Always valid inference", and
the asymptotic confidence sequences of Waudby-Smith et al. / Howard et al.) applied to the relative
effect. With θ̂ the estimate and s² its variance, the mixture likelihood ratio against θ0, mixing
θ − θ0 ~ N(0, τ²), is

    Λ = sqrt(s² / (s² + τ²)) · exp(τ² (θ̂ − θ0)² / (2 s² (s² + τ²)))

and {θ0 : Λ < 1/α} is the confidence sequence θ̂ ± w, with

    w² = s² (s² + τ²) / τ² · (2 log(1/α) + log(1 + τ² / s²)).

Ville's inequality bounds the chance that the true θ ever leaves it by α (asymptotically: s² is the
plug-in variance and θ̂ is only normal in the limit, as in Johari et al.'s use for conversion rates).

- The effect is relative and signed so that > 0 is better: (treatment − control) / |control| for
  direction "higher", (control − treatment) / |control| for "lower" (a latency 10 % lower is +10 %). Its
  variance is the delta method's for the ratio of the two means, so the bounds account for the control
  mean's own noise (dividing a difference's bounds by the control's estimate would not, and under-covers
  large effects). Under A/A the ratio is 1 and this is the difference test scaled by the control mean.
- The mixture variance τ² is fixed by the design, not the data: it makes the boundary narrowest at the
  sample size a fixed-horizon test would need for the minimum improvement at the design's α and power
  (s_fix = min / (z_{1−α/2} + z_power)); minimising w / s over x = τ² / s² gives x = 2 log(1/α) +
  log(1 + x), about 8.2 at α = 0.05, so τ ≈ the minimum improvement itself (Johari et al.'s advice to
  mix over effects of the size one wants to detect). Larger effects cross the boundary earlier anyway.
- The sequence is two-sided at level α: "better" and "worse" together are wrongly declared at most α of
  the time under A/A (each about α/2). The fixed-horizon size (`fixed_horizon_samples`) is two-sided at
  α as well, so the two are compared at the same error rate.

Decisions (none before `min_samples` per arm: the normal approximation needs some data, and the plug-in
variance of a small sample is itself noisy):
- worse:      the upper bound is below 0 (significantly worse: stop the challenger early, a guardrail);
- better:     the lower bound is above 0 (significantly better) and the estimate is at least the minimum
              improvement (practically better: a real but smaller gain does not replace the incumbent);
- not_better: the upper bound is below the minimum improvement (futility: the minimum is ruled out);
- continue:   otherwise, including a significant gain whose estimate is still below the minimum.
Under a true effect of exactly the minimum, "not_better" is wrong at most α/2 of the time (coverage).
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
    alpha: float = 0.05  # in (0, 0.5): the chance, over the whole test, of a wrong "better" or "worse"
    min_relative_improvement: float = 0.10  # > 0 (and < 1 for "lower": a metric cannot fall by 100 %)
    direction: Direction = "higher"  # which way is better
    power: float = 0.8  # in [0.5, 1): tunes the mixture; the fixed-horizon size has this power
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

    @cached_property  # evaluated on every peek; the design is frozen
    def mixture_variance(self) -> float:
        """τ² on the relative scale: the boundary is narrowest where a fixed-horizon test would stop."""
        a = 2 * math.log(1 / self.alpha)
        x = a
        for _ in range(50):  # x = a + log(1 + x) is a contraction (slope 1 / (1 + x) < 1/6)
            x = a + math.log1p(x)
        s_fix = self.min_relative_improvement / self.z_sum
        return x * s_fix * s_fix


@dataclass(frozen=True)
class SequentialResult:
    relative_effect: float  # > 0 is better (see the module); NaN when the control's mean is 0 or n < 2
    lower: float  # the confidence sequence for the relative effect (−inf / +inf when unknown)
    upper: float
    decision: Decision
    samples: int  # both arms together
    reason: str = field(default="", compare=False)  # why, in words

    def text(self) -> str:
        """E.g. "+12.3 % [+4.1 %, +20.8 %] after 1,840 samples: better"."""
        if math.isnan(self.relative_effect):
            estimate = "n/a"
        else:
            estimate = f"{_percent(self.relative_effect)} [{_percent(self.lower)}, {_percent(self.upper)}]"
        return f"{estimate} after {self.samples:,} samples: {self.decision}"


def _percent(value: float) -> str:
    if math.isinf(value):
        return "-inf" if value < 0 else "+inf"
    return f"{100 * value:+.1f} %"


def half_width(variance: float, design: SequentialDesign) -> float:
    """w: the confidence sequence's half-width for an estimate of this variance (0 for 0)."""
    if variance <= 0:
        return 0.0  # no noise at all: the boundary's limit as s² → 0
    tau2 = design.mixture_variance
    if math.isinf(tau2 / variance):
        return 0.0  # a subnormal variance: τ²/s² overflows (and 0 × inf is NaN); the limit is 0
    return math.sqrt(
        variance * (variance + tau2) / tau2 * (2 * math.log(1 / design.alpha) + math.log1p(tau2 / variance))
    )


def evaluate(control: ArmSummary, treatment: ArmSummary, design: SequentialDesign) -> SequentialResult:
    """The relative effect, its always-valid bounds and the decision for the aggregates so far."""
    samples = control.n + treatment.n
    if control.n < 2 or treatment.n < 2:
        return SequentialResult(
            math.nan, -math.inf, math.inf, "continue", samples, "fewer than 2 observations in an arm"
        )
    if control.mean == 0:
        # No relative effect exists; the workflow should compare such a metric on another scale.
        return SequentialResult(
            math.nan, -math.inf, math.inf, "continue", samples, "the control's mean is 0: no relative effect"
        )
    sign = 1.0 if design.direction == "higher" else -1.0
    base = abs(control.mean)
    effect = sign * (treatment.mean - control.mean) / base
    # Delta method for (m_T − m_C) / |m_C|: the partial derivatives are 1/|m_C| and −m_T/(m_C |m_C|).
    # Divided step by step, so that a control mean near 0 overflows to inf rather than dividing by 0.
    ratio = treatment.mean / control.mean
    variance = (treatment.variance / treatment.n + ratio * ratio * control.variance / control.n) / base / base
    if not (math.isfinite(effect) and math.isfinite(variance)):
        return SequentialResult(
            math.nan,
            -math.inf,
            math.inf,
            "continue",
            samples,
            "the control's mean is too close to 0 for a relative effect",
        )
    w = half_width(variance, design)
    lower, upper = effect - w, effect + w
    minimum = design.min_relative_improvement
    if min(control.n, treatment.n) < design.min_samples:
        decision: Decision = "continue"
        reason = f"fewer than {design.min_samples} observations in an arm"
    elif upper < 0:
        decision, reason = "worse", "significantly worse (the upper bound is below 0)"
    elif lower > 0 and effect >= minimum:
        decision, reason = "better", f"significantly better, by at least {minimum:.1%} as estimated"
    elif upper < minimum:
        decision, reason = "not_better", f"an improvement of {minimum:.1%} is ruled out"
    elif lower > 0:
        decision, reason = "continue", f"significantly better, but by less than {minimum:.1%} as estimated"
    else:
        decision, reason = "continue", "not yet significant either way"
    return SequentialResult(effect, lower, upper, decision, samples, reason)


def fixed_horizon_samples(baseline_mean: float, baseline_variance: float, design: SequentialDesign) -> int:
    """Per arm: a two-sided z-test at α with the design's power against the minimum relative improvement.

    n = (z_{1−α/2} + z_power)² · 2σ² / (min · |μ|)², both arms taken to have the baseline's variance.
    """
    if not math.isfinite(baseline_mean) or baseline_mean == 0:
        raise ValueError(f"baseline_mean must be finite and not 0, got {baseline_mean!r}")
    if not math.isfinite(baseline_variance) or baseline_variance < 0:
        raise ValueError(f"baseline_variance must be finite and >= 0, got {baseline_variance!r}")
    delta = design.min_relative_improvement * abs(baseline_mean)
    return max(2, math.ceil(design.z_sum**2 * 2 * baseline_variance / (delta * delta)))
