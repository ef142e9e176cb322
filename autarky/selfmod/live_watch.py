"""The watch after a promotion, on live evidence (pure: no I/O). A promoted agent's live metric is counts
from the product itself: the research items the person approved out of those the relevance scorer called
relevant (a proportion), or the anomaly alerts raised per metric-day (a rate with its exposure). Counts of
the promoted version are compared with the incumbent's before the promotion; the verdict is "regressed"
only on a significant drop beyond the tolerance (a one-sided test), and "not enough evidence yet" while
either side has too few data points to decide anything, so no rollback ever rests on a handful of items.

- A proportion: the score test of Farrington and Manning (1990) for a ratio of two proportions, H0: after
  ≥ (1 - tolerance) × baseline (higher is better; ≤ (1 + tolerance) × when lower is). Its constrained
  maximum-likelihood estimates have a closed form (the smaller root of a quadratic).
- A rate (events over an exposure, e.g. alerts per metric-day): the exact conditional test of two Poisson
  rates: given n events in all, the promoted version's share is Binomial(n, π0) at the tolerated ratio.

tests/test_live_watch.py checks both against scipy (which the product does not load).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from autarky.models.paired import binomial_cdf, binomial_sf

LiveKind = Literal["proportion", "rate"]
Better = Literal["higher", "lower"]
LiveStatus = Literal["regressed", "holds", "not_enough_evidence"]

# Below these, "not enough evidence yet": judged items per window (a proportion), events in both windows
# together (a rate). A one-sided test at alpha 0.05 could flag 0/3 against 9/10; no rollback on that.
MIN_TRIALS = 20
MIN_EVENTS = 20


_NORMAL = NormalDist()


class LiveCounts(BaseModel):
    """One version's live metric over a time window, as counts.

    A proportion: `events` successes (e.g. items the person approved) out of `exposure` trials (the items
    the scorer called relevant that the person judged). A rate: `events` (e.g. alerts) over `exposure` in
    the rate's unit (e.g. metric-days)."""

    metric: str  # what is counted, for people: "approved share of items called relevant"
    kind: LiveKind
    better: Better = "higher"
    events: int = Field(0, ge=0)
    exposure: float = Field(0.0, ge=0)
    unit: str = ""  # of the exposure, for a rate: "metric-days"
    pending: int = Field(0, ge=0)  # not (yet) judged, so not counted: items awaiting the person
    note: str = ""  # how the counts were taken (window, attribution), for the reason string

    @model_validator(mode="after")
    def _events_fit(self) -> LiveCounts:
        if self.kind == "proportion":
            if self.exposure != int(self.exposure):
                raise ValueError(f"{self.metric}: a proportion's trials must be whole, got {self.exposure}")
            if self.events > self.exposure:
                raise ValueError(f"{self.metric}: {self.events} successes out of {self.exposure:g} trials")
        return self

    @property
    def value(self) -> float | None:
        """The metric's figure (share or rate); None without exposure."""
        return self.events / self.exposure if self.exposure else None

    def describe(self) -> str:
        if self.kind == "proportion":
            share = f" ({self.value:.1%})" if self.value is not None else ""
            text = f"{self.events}/{self.exposure:g}{share}"
        else:
            rate = f"{self.value:.3g}" if self.value is not None else "n/a"
            text = (
                f"{self.events} in {self.exposure:.3g} {self.unit or 'units'} ({rate} per {_one(self.unit)})"
            )
        return text + (f", {self.pending} pending" if self.pending else "")


class LiveVerdict(BaseModel):
    status: LiveStatus
    p_value: float | None = None  # of the one-sided test; None when not tested
    baseline: float | None = None  # the metric's figure before the promotion
    after: float | None = None  # and after
    reason: str

    @property
    def regressed(self) -> bool:
        return self.status == "regressed"


def live_regression(
    baseline: LiveCounts,
    after: LiveCounts,
    tolerance: float,
    alpha: float = 0.05,
    min_trials: int = MIN_TRIALS,
    min_events: int = MIN_EVENTS,
) -> LiveVerdict:
    """Whether the promoted version's live metric (`after`) is significantly worse than the incumbent's
    (`baseline`) by more than `tolerance` (relative: 0.1 = 10 % worse is still tolerated)."""
    if (baseline.metric, baseline.kind, baseline.better) != (after.metric, after.kind, after.better):
        raise ValueError(
            f"live counts of different metrics: {baseline.metric!r} ({baseline.kind}, {baseline.better} is "
            f"better) against {after.metric!r} ({after.kind}, {after.better} is better)"
        )
    if not 0 <= tolerance < 1:
        raise ValueError(f"regression tolerance must be in [0, 1), got {tolerance!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    figures = f"{after.metric}: after {after.describe()}, before {baseline.describe()}"
    ratio = 1 - tolerance if after.better == "higher" else 1 + tolerance
    if after.kind == "proportion":
        short = [
            f"{name} {int(c.exposure)}"
            for name, c in (("before", baseline), ("after", after))
            if c.exposure < min_trials
        ]
        if short:
            return _too_little(
                baseline,
                after,
                f"{figures}: not enough evidence yet (judged items "
                f"{', '.join(short)}; at least {min_trials} a side)",
            )
        p = ratio_score_p(
            after.events, int(after.exposure), baseline.events, int(baseline.exposure), ratio, after.better
        )
        test = "one-sided score test"
    else:
        total = baseline.events + after.events
        if total < min_events or not baseline.exposure or not after.exposure:
            return _too_little(
                baseline,
                after,
                f"{figures}: not enough evidence yet ({total} events in "
                f"both windows, at least {min_events}; exposure before "
                f"{baseline.exposure:.3g}, after {after.exposure:.3g})",
            )
        p = poisson_ratio_p(
            after.events, after.exposure, baseline.events, baseline.exposure, ratio, after.better
        )
        test = "one-sided exact rate-ratio test"
    worse = "below" if after.better == "higher" else "above"
    hypothesis = f"after {worse} {ratio:.0%} of before"
    if p < alpha:
        return LiveVerdict(
            status="regressed",
            p_value=p,
            baseline=baseline.value,
            after=after.value,
            reason=f"{figures}: regressed ({test} of {hypothesis}: p = {p:.3g} < alpha {alpha:g})",
        )
    return LiveVerdict(
        status="holds",
        p_value=p,
        baseline=baseline.value,
        after=after.value,
        reason=f"{figures}: holds (no significant drop: {test} of {hypothesis}: p = {p:.3g} ≥ alpha "
        f"{alpha:g})",
    )


def _too_little(baseline: LiveCounts, after: LiveCounts, reason: str) -> LiveVerdict:
    return LiveVerdict(
        status="not_enough_evidence", baseline=baseline.value, after=after.value, reason=reason
    )


def ratio_score_p(x1: int, n1: int, x0: int, n0: int, ratio: float, better: Better = "higher") -> float:
    """One-sided p-value of the Farrington-Manning score test that p1 (x1 of n1) is worse than `ratio` ×
    p0 (x0 of n0): H0 p1 ≥ ratio·p0 (higher better) or p1 ≤ ratio·p0 (lower better)."""
    if n1 <= 0 or n0 <= 0:
        raise ValueError("both samples need at least one trial")
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, got {ratio!r}")
    q0, q1 = _constrained_mle(x1, n1, x0, n0, ratio)
    difference = x1 / n1 - ratio * x0 / n0
    variance = q1 * (1 - q1) / n1 + ratio**2 * q0 * (1 - q0) / n0
    if variance <= 0:  # both estimates at 0 or 1: the data cannot tell a drop from none
        worse = difference < 0 if better == "higher" else difference > 0
        return 0.0 if worse else 1.0
    z = difference / math.sqrt(variance)
    return _NORMAL.cdf(z if better == "higher" else -z)


def _constrained_mle(x1: int, n1: int, x0: int, n0: int, ratio: float) -> tuple[float, float]:
    """(p0, p1) maximising the likelihood subject to p1 = ratio · p0: the smaller root of
    ratio·N·p0² - (ratio·(n1 + x0) + n0 + x1)·p0 + (x0 + x1) = 0 (Farrington & Manning 1990)."""
    total, successes = n1 + n0, x1 + x0
    a = ratio * total
    b = ratio * (n1 + x0) + n0 + x1
    discriminant = max(b * b - 4 * a * successes, 0.0)
    # The smaller root, in the form that loses no precision when 4ac is small against b².
    p0 = 2 * successes / (b + math.sqrt(discriminant)) if successes else 0.0
    return p0, min(ratio * p0, 1.0)


def poisson_ratio_p(
    x1: int, exposure1: float, x0: int, exposure0: float, ratio: float, better: Better = "lower"
) -> float:
    """One-sided exact conditional p-value that rate 1 (x1 over exposure1) is worse than `ratio` × rate 0:
    given n = x0 + x1, X1 ~ Binomial(n, π0) with π0 = ratio·e1 / (ratio·e1 + e0) at H0's boundary."""
    if exposure1 <= 0 or exposure0 <= 0:
        raise ValueError("both windows need a positive exposure")
    n = x0 + x1
    pi0 = ratio * exposure1 / (ratio * exposure1 + exposure0)
    if better == "lower":  # worse: more events than the tolerated ratio expects
        return binomial_sf(x1, n, pi0)
    return binomial_cdf(x1, n, pi0)


def _one(unit: str) -> str:
    return unit.removesuffix("s") if unit else "unit"
