"""Pure trend detectors: robust slopes, Mann-Kendall, time-to-limit, leaks, early warnings, overload.

Deterministic and stdlib-only (no numpy, no I/O, no clock reads) so workflow code can call them: time
always comes in as an argument, as float seconds or datetimes (naive datetimes are taken as UTC).

Building blocks
    theil_sen_slope  median of pairwise slopes; ~29 % of the points can be outliers without moving it.
    mann_kendall     rank-based test for a monotonic trend; needs no normality and ignores magnitudes.
    predict_linear   like Prometheus' predict_linear, but with the Theil-Sen line.
    time_to_limit    seconds from the newest point until that line reaches a limit.
    hamed_rao_inflation  variance inflation of Mann-Kendall's S for autocorrelated values.
    still_rising_p   does a series still rise once its largest one-off level step is taken out?

Detectors (each returns a report or None) combine a significant Mann-Kendall trend (corrected for
autocorrelation) with a slope that matters and a newest half that still rises, so noise, persistent
noise, one-off steps, garbage-collector sawtooth and allocator jitter do not fire them. Each newer check
has a keyword to switch it off (old behaviour, for replaying workflow histories). The work is O(n²) in
pairs (Theil-Sen, Mann-Kendall, the n autocorrelation lags of Hamed-Rao: a few O(n²) passes per call),
meant for windows up to ~120 points; `TrendSeries` keeps such a window across continue-as-new.
"""

from __future__ import annotations

import itertools
import math
import operator
import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

TimeLike = float | datetime
MIB = 1024 * 1024
STILL_GROWING_P = 0.05  # the newest half of a window must still rise at this significance
STEP_SAMPLES = 3  # a level step may take this many sampling intervals (still_rising_p)
STEP_SIGMAS = 4.0  # ... and must stand out by this many robust standard deviations of the increments

# ---------------------------------------------------------------------------------------------- helpers


def _seconds(t: TimeLike) -> float:
    if isinstance(t, datetime):
        # Naive datetimes count as UTC: converting from local time would depend on the host's zone.
        return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()
    return float(t)


def _clean(times: Sequence[TimeLike], *series: Sequence[float | None]) -> list[tuple[float, ...]]:
    """Rows (t, v1, v2, …) sorted by time, dropping a row when any of its values is missing or not finite."""
    for values in series:
        if len(values) != len(times):
            raise ValueError(f"{len(times)} times but {len(values)} values")
    rows = []
    for t, *vs in zip(times, *series, strict=True):
        if all(v is not None and math.isfinite(v) for v in vs):
            rows.append((_seconds(t), *(float(v) for v in vs)))
    rows.sort(key=lambda row: row[0])  # stable: equal times keep their order
    return rows


def _fmt_p(p: float) -> str:
    return f"p={p:.2g}"


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _fmt_rate(per_second: float, unit: str) -> str:
    # Per minute for fast signals (disk filling, heating up), per hour for slow ones.
    if abs(per_second) * 3600 >= 10:
        return f"{per_second * 60:.3g} {unit}/min".replace(" /", "/")
    return f"{per_second * 3600:.3g} {unit}/h".replace(" /", "/")


def _fmt_value(value: float, unit: str) -> str:
    return f"{value:g} {unit}".rstrip()


# ------------------------------------------------------------------------------------- robust line fit


def _pair_slopes(rows: Sequence[tuple[float, ...]]) -> list[float]:
    ts = [row[0] for row in rows]
    vs = [row[1] for row in rows]
    slopes: list[float] = []
    for i in range(len(ts) - 1):
        ti, vi = ts[i], vs[i]
        slopes.extend(
            [(vj - vi) / (tj - ti) for tj, vj in zip(ts[i + 1 :], vs[i + 1 :], strict=True) if tj != ti]
        )
    return slopes


def theil_sen_slope(times: Sequence[TimeLike], values: Sequence[float]) -> float:
    """Median of the slopes between every pair of points with distinct times (units of value per second).

    Raises ValueError with fewer than two distinct times.
    """
    if len(times) != len(values):
        raise ValueError(f"{len(times)} times but {len(values)} values")
    slopes = _pair_slopes([(_seconds(t), float(v)) for t, v in zip(times, values, strict=True)])
    if not slopes:
        raise ValueError("the Theil-Sen slope needs at least two distinct times")
    return statistics.median(slopes)


class _Line(NamedTuple):
    slope: float  # per second
    at_last: float  # fitted value at t_last
    t_last: float

    def at(self, t: float) -> float:
        return self.at_last + self.slope * (t - self.t_last)

    def seconds_to(self, limit: float, last_observed: float) -> float | None:
        # Already there counts whether the line or the newest sample says so: a full disk is full.
        if self.at_last >= limit or last_observed >= limit:
            return 0.0
        if self.slope <= 0:
            return None
        return (limit - self.at_last) / self.slope


def _fit(rows: Sequence[tuple[float, ...]]) -> _Line:
    slopes = _pair_slopes(rows)
    if not slopes:
        raise ValueError("a trend needs at least two distinct times")
    slope = statistics.median(slopes)
    t_last = rows[-1][0]
    # Intercept taken at the newest time rather than at t=0: with epoch seconds that avoids cancellation.
    return _Line(slope, statistics.median(v - slope * (t - t_last) for t, v, *_ in rows), t_last)


def predict_linear(times: Sequence[TimeLike], values: Sequence[float | None], at: TimeLike) -> float:
    """Value of the Theil-Sen line at time `at` (intercept = median of v - slope·t).

    Missing/non-finite values are skipped; ValueError with fewer than two distinct times.
    """
    return _fit(_clean(times, values)).at(_seconds(at))


def time_to_limit(times: Sequence[TimeLike], values: Sequence[float | None], limit: float) -> float | None:
    """Seconds from the newest time until the Theil-Sen line reaches `limit`.

    0 when the fitted or the newest observed value is already at or over the limit; None when the slope is
    ≤ 0 (never reached). Missing/non-finite values are skipped; ValueError with < 2 distinct times.
    """
    rows = _clean(times, values)
    return _fit(rows).seconds_to(limit, rows[-1][1])


# ------------------------------------------------------------------------------------------ Mann-Kendall


class MannKendall(BaseModel):
    """Mann-Kendall trend test: S = Σ_{i<j} sign(x_j − x_i) over the values in time order.

    Under "no trend" S is about normal with mean 0 and, with tie groups of sizes t_k,
    Var(S) = [n(n−1)(2n+5) − Σ t_k(t_k−1)(2t_k+5)] / 18; z applies a continuity correction of 1.
    With the autocorrelation correction, Var(S) is multiplied by `variance_inflation` (see
    `mann_kendall`). p_value is two-sided; p_increasing / p_decreasing are the one-sided ones.
    """

    model_config = ConfigDict(frozen=True)

    n: int
    s: int
    var_s: float = Field(description="Var(S), times variance_inflation")
    variance_inflation: float = Field(
        1.0, description="n/n* of the Hamed-Rao autocorrelation correction (1 without it)"
    )
    z: float
    p_value: float
    trend: Literal["increasing", "decreasing", "none"]

    @property
    def p_increasing(self) -> float:
        return 0.5 * math.erfc(self.z / math.sqrt(2))

    @property
    def p_decreasing(self) -> float:
        return 0.5 * math.erfc(-self.z / math.sqrt(2))

    def describe(self) -> str:
        return f"Mann-Kendall: {self.trend} (S={self.s}, z={self.z:.2f}, {_fmt_p(self.p_value)}, n={self.n})"


def mann_kendall(
    values: Sequence[float], *, alpha: float = 0.05, autocorrelation: bool = False
) -> MannKendall:
    """Mann-Kendall test of values in time order; `trend` is "none" unless the two-sided p < alpha.

    Constant (or fewer than two) values have Var(S) = 0 and give z = 0, p = 1, no trend.
    `autocorrelation=True` applies the Hamed-Rao correction (`hamed_rao_inflation`): without it,
    persistent noise (an AR(1) with φ = 0.95, a random walk) looks like a trend in a large share of
    windows, because neighbouring values are not independent draws.
    """
    xs = list(values)
    n = len(xs)
    s = _mk_s(xs)
    ties = sum(t * (t - 1) * (2 * t + 5) for t in Counter(xs).values() if t > 1)
    inflation = hamed_rao_inflation(xs) if autocorrelation else 1.0
    var_s = (n * (n - 1) * (2 * n + 5) - ties) / 18 * inflation
    z = _mk_z(s, var_s)
    # erfc rather than 1 - erf: keeps small p-values accurate instead of rounding them to 0.
    p = math.erfc(abs(z) / math.sqrt(2))
    trend: Literal["increasing", "decreasing", "none"] = "none"
    if p < alpha and s != 0:
        trend = "increasing" if s > 0 else "decreasing"
    return MannKendall(n=n, s=s, var_s=var_s, variance_inflation=inflation, z=z, p_value=p, trend=trend)


def _mk_s(xs: Sequence[float]) -> int:
    s = 0
    for i, xi in enumerate(xs):
        s += sum([(xj > xi) - (xj < xi) for xj in xs[i + 1 :]])
    return s


def _mk_z(s: float, var_s: float) -> float:
    # Continuity correction: S moves in steps of 2, so pull it 1 towards 0 before dividing.
    return 0.0 if var_s <= 0 or s == 0 else (s - 1 if s > 0 else s + 1) / math.sqrt(var_s)


def _p_up(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def _rising(values: Sequence[float], p_value: float, autocorrelation: bool) -> MannKendall | None:
    """The Mann-Kendall test when it finds a rise at one-sided p < p_value, else None.

    The plain test runs first: the correction only ever shrinks z (inflation ≥ 1), so a series the plain
    test rejects needs no O(n²) correction.
    """
    mk = mann_kendall(values)
    if mk.s <= 0 or mk.p_increasing >= p_value:
        return None
    if autocorrelation:
        inflation = hamed_rao_inflation(values)
        var_s = mk.var_s * inflation
        z = _mk_z(mk.s, var_s)
        mk = mk.model_copy(
            update={
                "var_s": var_s,
                "variance_inflation": inflation,
                "z": z,
                "p_value": math.erfc(abs(z) / math.sqrt(2)),
                "trend": "increasing" if math.erfc(abs(z) / math.sqrt(2)) < 0.05 else "none",
            }
        )
        if mk.p_increasing >= p_value:
            return None
    return mk


def _average_ranks(xs: Sequence[float]) -> list[float]:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and xs[order[end + 1]] == xs[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def hamed_rao_inflation(values: Sequence[float]) -> float:
    """Variance inflation n/n* of the Mann-Kendall S for autocorrelated values (Hamed & Rao 1998).

    K. H. Hamed, A. R. Rao, "A modified Mann-Kendall trend test for autocorrelated data", Journal of
    Hydrology 204 (1998) 182-196: remove the Theil-Sen trend (by index), rank the residuals, take the
    autocorrelation ρ_k of those ranks at every lag, keep only the lags significant at 5 %
    (|ρ_k| > 1.96/√n), and n/n* = 1 + 2/(n(n−1)(n−2)) · Σ_k (n−k)(n−k−1)(n−k−2) ρ_k.

    Chosen over (trend-free) pre-whitening because it makes no AR(1) assumption: a garbage-collector
    sawtooth (periodic, with negative autocorrelation at half its period) is corrected correctly, where
    pre-whitening with the lag-1 autocorrelation would wipe out the leak under it. It is clamped at ≥ 1
    (never makes a trend look more significant than the plain test). It under-corrects very persistent
    noise (φ ≥ 0.9, random walks: the estimated ρ_k are biased low in a short window): with 120
    points it cuts their false alarms by about 2-3×, not down to the nominal level. O(n²); 1 for fewer
    than 4 values or when the residuals are all equal (an exact line).
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n < 4:
        return 1.0
    slopes: list[float] = []
    for i in range(n - 1):
        xi = xs[i]
        slopes.extend([(xj - xi) / lag for lag, xj in enumerate(xs[i + 1 :], 1)])
    slope = statistics.median(slopes)
    ranks = _average_ranks([x - slope * i for i, x in enumerate(xs)])
    mean = (n + 1) / 2
    centred = [r - mean for r in ranks]
    denominator = sum(c * c for c in centred)
    if denominator <= 0:
        return 1.0
    bound = 1.96 / math.sqrt(n)
    total = 0.0
    for lag in range(1, n - 2):  # the weight (n−k)(n−k−1)(n−k−2) is 0 from k = n−2 on
        rho = sum(map(operator.mul, centred, centred[lag:])) / denominator
        if abs(rho) > bound:
            total += (n - lag) * (n - lag - 1) * (n - lag - 2) * rho
    return max(1.0, 1 + 2 * total / (n * (n - 1) * (n - 2)))


def still_rising_p(values: Sequence[float], *, step_robust: bool = True) -> float:
    """One-sided Mann-Kendall p-value that values (in time order) rise, with one level step taken out.

    With `step_robust`, the largest rise over at most STEP_SAMPLES consecutive intervals, beyond what
    the median interval rises anyway, is taken to be a one-off step when it stands out from how much
    the intervals vary (over STEP_SIGMAS robust standard deviations): the values inside it are dropped
    and the later ones lowered by it before testing. A single step (disk 80 % → 88 % within a couple of
    minutes, +60 MiB RSS) then leaves a flat series wherever it is, while a steady rise (and a
    garbage-collector sawtooth over a leak) has no such outlier and keeps all its pairs across the
    series. Without `step_robust`, the plain one-sided Mann-Kendall p-value. O(n²).
    """
    xs = [float(v) for v in values]
    if step_robust and len(xs) >= 3:
        increments = [b - a for a, b in itertools.pairwise(xs)]
        typical = statistics.median(increments)
        # 1.4826·MAD estimates the standard deviation of normal increments; 0 when most are equal.
        sigma = 1.4826 * statistics.median(abs(d - typical) for d in increments)
        best, start, width = 0.0, 0, 1
        for w in range(1, min(STEP_SAMPLES, len(xs) - 1) + 1):
            for k in range(len(xs) - w):
                excess = xs[k + w] - xs[k] - w * typical
                if excess > best and excess > STEP_SIGMAS * sigma * math.sqrt(w):
                    best, start, width = excess, k, w
        if best > 0:
            xs = xs[: start + 1] + [x - best for x in xs[start + width :]]
    mk = mann_kendall(xs)
    return mk.p_increasing if mk.s > 0 else 1.0


# ------------------------------------------------------------------------------------------- detectors


class LeakReport(BaseModel):
    """A sustained upward RSS trend (see `detect_leak`)."""

    model_config = ConfigDict(frozen=True)

    subject: str
    slope_bytes_per_second: float
    slope_mib_per_hour: float
    current_bytes: float = Field(description="fitted RSS at the newest sample")
    limit_bytes: float | None
    time_to_limit_seconds: float | None
    p_value: float = Field(description="one-sided Mann-Kendall p-value for an increasing trend")
    points: int
    span_seconds: float
    relative_growth: float = Field(description="fitted growth over the window / median RSS")
    relative_floor_rise: float = Field(description="(min of newest third - min of oldest third) / median")

    def describe(self) -> str:
        text = (
            f"RSS of {self.subject} grows {self.slope_mib_per_hour:.1f} MiB/h "
            f"(Mann-Kendall {_fmt_p(self.p_value)})"
        )
        if self.limit_bytes is None:
            return text + "; no memory limit known"
        if self.time_to_limit_seconds == 0:
            return text + f"; already at the {_fmt_bytes(self.limit_bytes)} limit"
        assert self.time_to_limit_seconds is not None  # positive slope: the limit is reached
        limit, eta = _fmt_bytes(self.limit_bytes), _fmt_duration(self.time_to_limit_seconds)
        return text + f"; reaches the {limit} limit in {eta}"


def detect_leak(
    times: Sequence[TimeLike],
    rss_bytes: Sequence[float | None],
    limit_bytes: float | None,
    *,
    min_points: int = 10,
    min_span_seconds: float = 1800.0,
    p_value: float = 0.01,
    min_relative_growth: float = 0.05,
    subject: str = "process",
    autocorrelation: bool = True,
    step_robust: bool = True,
    min_sustained_ratio: float = 0.5,
) -> LeakReport | None:
    """A memory leak: RSS rises steadily (Mann-Kendall increasing, one-sided p < p_value) AND the
    Theil-Sen growth over the window is at least `min_relative_growth` of the median RSS AND the floor
    (minimum of the newest third vs the oldest third) rose by at least half that AND the newest half of
    the window still rises (p < STILL_GROWING_P), so warm-up followed by a plateau is not one.

    The floor and growth checks keep garbage-collector sawtooth and allocator noise out: they can look
    "significant" to a rank test while the fitted line stays flat and the floor stays put. A sawtooth is
    only told apart from a leak when the window holds about three of its cycles or more;
    `min_span_seconds` keeps very short windows out. None when there are fewer than `min_points`
    usable samples.

    Keywords that switch the newer checks off (the value in brackets is the old behaviour):
    `autocorrelation` [False]: Hamed-Rao variance correction of the whole-window test (see
    `hamed_rao_inflation`). `step_robust` [False]: the newest half must rise with one level step
    allowed anywhere in it (`still_rising_p`), so a one-off jump of RSS is not a leak wherever it is.
    `min_sustained_ratio` [0.0]: the Theil-Sen slope of the newest half must be at least this share of
    the oldest half's, so a decelerating cache warm-up (RSS ~ log(1 + t/τ)) is not a leak.
    """
    rows = _clean(times, rss_bytes)
    if len(rows) < min_points:
        return None
    span = rows[-1][0] - rows[0][0]
    if span < min_span_seconds or span <= 0:
        return None
    values = [v for _, v in rows]
    mk = _rising(values, p_value, autocorrelation=False)  # cheap first; corrected last
    if mk is None:
        return None
    line = _fit(rows)
    median = statistics.median(values)
    growth = line.slope * span / median if median > 0 else math.inf
    if line.slope <= 0 or growth < min_relative_growth:
        return None
    # A leak lifts the floor the collector returns to; a sawtooth keeps dropping back to the same one.
    third = len(values) // 3
    floor_rise = (min(values[-third:]) - min(values[:third])) / median if median > 0 else math.inf
    if floor_rise < min_relative_growth / 2:
        return None
    # A leak keeps growing: a process that warmed up and then levelled off has a significant trend over
    # the whole window, but none in its newest half; nor has one whose RSS jumped once in that half.
    half = len(rows) // 2
    newest_half = values[half:]
    if len(newest_half) < 5 or still_rising_p(newest_half, step_robust=step_robust) >= STILL_GROWING_P:
        return None
    # ... and at about the same rate: a cache warming up logarithmically still rises in the newest half,
    # but several times more slowly than in the oldest half. (A leak starting mid-window passes: its
    # oldest half is flat.)
    if min_sustained_ratio > 0 and half >= 2:
        oldest_slope, newest_slope = _fit(rows[:half]).slope, _fit(rows[half:]).slope
        if oldest_slope > 0 and newest_slope < min_sustained_ratio * oldest_slope:
            return None
    if autocorrelation:
        mk = _rising(values, p_value, autocorrelation=True)
        if mk is None:
            return None
    ttl = line.seconds_to(limit_bytes, values[-1]) if limit_bytes is not None else None
    return LeakReport(
        subject=subject,
        slope_bytes_per_second=line.slope,
        slope_mib_per_hour=line.slope * 3600 / MIB,
        current_bytes=line.at_last,
        limit_bytes=limit_bytes,
        time_to_limit_seconds=ttl,
        p_value=mk.p_increasing,
        points=len(rows),
        span_seconds=span,
        relative_growth=growth,
        relative_floor_rise=floor_rise,
    )


class EarlyWarning(BaseModel):
    """A value rising significantly that will reach its limit within the horizon (see `early_warning`)."""

    model_config = ConfigDict(frozen=True)

    subject: str
    unit: str
    slope_per_second: float
    current: float = Field(description="fitted value at the newest sample")
    limit: float
    horizon_seconds: float
    time_to_limit_seconds: float
    p_value: float = Field(description="one-sided Mann-Kendall p-value for an increasing trend")
    points: int

    def describe(self) -> str:
        text = (
            f"{self.subject} rises {_fmt_rate(self.slope_per_second, self.unit)} "
            f"(Mann-Kendall {_fmt_p(self.p_value)}), now {_fmt_value(round(self.current, 1), self.unit)}"
        )
        if self.time_to_limit_seconds == 0:
            return text + f"; already at the limit of {_fmt_value(self.limit, self.unit)}"
        return text + (
            f"; reaches {_fmt_value(self.limit, self.unit)} in {_fmt_duration(self.time_to_limit_seconds)}"
        )


def drift_p(values: Sequence[float]) -> float:
    """One-sided p-value that the series drifts upwards, judged against a zero-drift random walk plus
    white measurement noise.

    Mann-Kendall assumes independent values, and a random walk is anything but: it calls a large share
    of a walk's wanders a trend. Here the rise from the mean of the first k values to that of the last k
    (k ≈ n/12) is compared with what the series does on its own. With a walk of σ² per step and white
    noise of τ², lag-j differences have variance j σ² + 2τ² (about their mean, so a steady trend is not
    counted): the lag-1 and lag-k variances give both parts, and the rise's variance is about
    (n - 2k + 1 + (k - 1)(2k - 1)/(3k)) σ² + 2τ²/k. A noisy steady fill has σ² ≈ 0 and keeps its power;
    stationary persistent noise (AR(1)) looks partly like a walk and partly like noise, and moves less
    over n steps than that walk would, so the test is conservative there. Assumes about even spacing
    (the product's TrendSeries keeps one point per interval).
    """
    n = len(values)
    k = max(2, n // 12)
    if n < 2 * k + 2:
        return 1.0
    v1 = statistics.pvariance([b - a for a, b in pairwise(values)])
    vk = statistics.pvariance([values[i + k] - values[i] for i in range(n - k)])
    walk = max(0.0, (vk - v1) / (k - 1))  # σ² per step
    noise = max(0.0, (v1 - walk) / 2)  # τ²
    variance = walk * (n - 2 * k + 1 + (k - 1) * (2 * k - 1) / (3 * k)) + 2 * noise / k
    rise = statistics.fmean(values[-k:]) - statistics.fmean(values[:k])
    if variance == 0:
        return 0.0 if rise > 0 else 1.0
    t = rise / math.sqrt(variance)
    # The variances come from a few stretches of k steps, so t has Student-like tails: map it to a normal
    # deviate with the usual approximation z = t (1 - 1/(4ν)) / √(1 + t²/(2ν)), ν ≈ 2n/k - 1 (overlapping
    # lag-k differences carry about twice what n / k disjoint ones would; tests/test_trend_autocorrelation
    # measures the false-alarm rate on walks and AR(1) noise).
    dof = 2 * n / k - 1
    z = t * (1 - 1 / (4 * dof)) / math.sqrt(1 + t * t / (2 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def early_warning(
    times: Sequence[TimeLike],
    values: Sequence[float | None],
    limit: float,
    horizon_seconds: float,
    *,
    min_points: int = 8,
    p_value: float = 0.001,
    subject: str = "value",
    unit: str = "",
    autocorrelation: bool = True,
    still_rising: bool = True,
    drift: bool = True,
) -> EarlyWarning | None:
    """Warn when a significant upward trend (Mann-Kendall, one-sided p < p_value) reaches `limit` within
    `horizon_seconds` of the newest sample — e.g. disk used % towards 95, temperature towards critical.

    A value already over the limit without a rising trend gives None: that is a threshold rule's job.
    p_value is strict by default because a small slope extrapolated over a long horizon is easy to get
    from noise; a real fill or heat-up is far more significant than that within a few points.

    Keywords that switch the newer checks off (the value in brackets is the old behaviour):
    `autocorrelation` [False]: Hamed-Rao variance correction of the test (see `hamed_rao_inflation`),
    so persistent noise (load-driven temperature, a wandering disk) is not taken for a trend.
    `still_rising` [False]: the newest half of the window must still rise (p < STILL_GROWING_P) with one
    level step allowed anywhere in it (`still_rising_p`): a one-off step (disk 80 % → 88 %, then flat)
    is not a fill, wherever in the window it happened. This needs about 12 points.
    `drift` [False]: the mean step between values must be positive at p < p_value too (`drift_p`), so a
    zero-drift random walk, which Mann-Kendall takes for a trend in a large share of windows, is not one.
    """
    rows = _clean(times, values)
    if len(rows) < min_points:
        return None
    series = [v for _, v in rows]
    mk = _rising(series, p_value, autocorrelation=False)  # cheap first; corrected last
    if mk is None:
        return None
    line = _fit(rows)
    ttl = line.seconds_to(limit, rows[-1][1])
    if ttl is None or ttl >= horizon_seconds:
        return None
    if still_rising and still_rising_p(series[len(series) // 2 :]) >= STILL_GROWING_P:
        return None
    if drift and drift_p(series) >= p_value:
        return None
    if autocorrelation:
        mk = _rising(series, p_value, autocorrelation=True)
        if mk is None:
            return None
    return EarlyWarning(
        subject=subject,
        unit=unit,
        slope_per_second=line.slope,
        current=line.at_last,
        limit=limit,
        horizon_seconds=horizon_seconds,
        time_to_limit_seconds=ttl,
        p_value=mk.p_increasing,
        points=len(rows),
    )


class OverloadWarning(BaseModel):
    """A load signal (latency, queue backlog) and CPU rising together (see `overload_warning`)."""

    model_config = ConfigDict(frozen=True)

    signal_name: str
    signal_unit: str
    signal_slope_per_second: float
    signal_p_value: float
    cpu_slope_percent_per_second: float
    cpu_p_value: float
    signal_relative_rise: float = Field(description="fitted rise over the window / median of the signal")
    cpu_rise_percent: float = Field(description="fitted CPU rise over the window, in percentage points")
    points: int
    span_seconds: float

    def describe(self) -> str:
        return (
            f"{self.signal_name} rises {_fmt_rate(self.signal_slope_per_second, self.signal_unit)} "
            f"(Mann-Kendall {_fmt_p(self.signal_p_value)}) while CPU rises "
            f"{_fmt_rate(self.cpu_slope_percent_per_second, '%')} ({_fmt_p(self.cpu_p_value)}): "
            "load is outgrowing capacity"
        )


def overload_warning(
    times: Sequence[TimeLike],
    load_signal: Sequence[float | None],
    cpu_percent: Sequence[float | None],
    *,
    p_value: float = 0.01,
    min_points: int = 8,
    min_relative_rise: float = 0.1,
    min_cpu_rise_percent: float = 5.0,
    signal_name: str = "latency",
    signal_unit: str = "ms",
    autocorrelation: bool = True,
) -> OverloadWarning | None:
    """Overload: the load signal AND CPU both rise significantly (each Mann-Kendall one-sided
    p < p_value) and materially (Theil-Sen rise over the window ≥ `min_relative_rise` of the signal's
    median, and ≥ `min_cpu_rise_percent` CPU points) over the same samples. Samples where either is
    missing (None) are skipped pairwise. The magnitude floors keep a rank test's ~p_value false alarms
    on a flat, noisy signal from counting as "rising".

    Latency rising with CPU flat points elsewhere (a dependency, the network, locks), and CPU rising
    with latency flat is headroom being used; neither is reported.

    `autocorrelation` [old behaviour: False]: Hamed-Rao variance correction of both tests (see
    `hamed_rao_inflation`): load and CPU are persistent, and both wander together with the traffic.
    """
    rows = _clean(times, load_signal, cpu_percent)
    if len(rows) < min_points:
        return None
    signal_mk = _rising([r[1] for r in rows], p_value, autocorrelation)
    if signal_mk is None:
        return None
    cpu_mk = _rising([r[2] for r in rows], p_value, autocorrelation)
    if cpu_mk is None:
        return None
    span = rows[-1][0] - rows[0][0]
    signal_line = _fit([(r[0], r[1]) for r in rows])
    cpu_line = _fit([(r[0], r[2]) for r in rows])
    signal_median = statistics.median(r[1] for r in rows)
    signal_rise = signal_line.slope * span / signal_median if signal_median > 0 else math.inf
    cpu_rise = cpu_line.slope * span
    if signal_rise < min_relative_rise or cpu_rise < min_cpu_rise_percent:
        return None
    return OverloadWarning(
        signal_name=signal_name,
        signal_unit=signal_unit,
        signal_slope_per_second=signal_line.slope,
        signal_p_value=signal_mk.p_increasing,
        cpu_slope_percent_per_second=cpu_line.slope,
        cpu_p_value=cpu_mk.p_increasing,
        signal_relative_rise=signal_rise,
        cpu_rise_percent=cpu_rise,
        points=len(rows),
        span_seconds=span,
    )


# ---------------------------------------------------------------------------------------------- history


class TrendSeries(BaseModel):
    """A bounded window of (time, value) that a detector needs, small enough to carry across
    continue-as-new (round-trips through model_dump_json / model_validate_json).

    Missing or non-finite values are kept as None so several series fed in lockstep stay aligned;
    the detectors skip them.
    """

    max_points: int = Field(60, ge=2)
    min_spacing_seconds: float = Field(0.0, ge=0)
    times: list[float] = Field(default_factory=list)
    values: list[float | None] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> TrendSeries:
        if len(self.times) != len(self.values):
            raise ValueError(f"{len(self.times)} times but {len(self.values)} values")
        self._trim()
        return self

    def _trim(self) -> None:
        if len(self.times) > self.max_points:
            del self.times[: -self.max_points]
            del self.values[: -self.max_points]

    def add(self, t: TimeLike, v: float | None, *, follow_clock_steps: bool = True) -> bool:
        """Append a point unless it is closer than min_spacing_seconds to the last one kept.

        A point older than the last one means the host's clock was set back (by hand or by NTP): the kept
        points are moved back with it, one spacing before the new point, so the series stays in order and
        the detectors keep working instead of ignoring the host until its clock catches up
        (`follow_clock_steps` False: such points are dropped, as before). Returns whether it was kept.
        """
        seconds = _seconds(t)
        if self.times and seconds < self.times[-1] and not follow_clock_steps:
            return False
        if self.times and seconds < self.times[-1]:
            shift = self.times[-1] - seconds + max(self.min_spacing_seconds, 1.0)
            self.times = [x - shift for x in self.times]
        elif self.times and seconds - self.times[-1] < self.min_spacing_seconds:
            return False
        self.times.append(seconds)
        self.values.append(float(v) if v is not None and math.isfinite(v) else None)
        self._trim()
        return True
