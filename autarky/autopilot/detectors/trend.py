"""Pure trend detectors: robust slopes, Mann-Kendall, time-to-limit, leaks, early warnings, overload.

Deterministic and stdlib-only (no numpy, no I/O, no clock reads) so workflow code can call them: time
always comes in as an argument, as float seconds or datetimes (naive datetimes are taken as UTC).

Building blocks (the statistical tests themselves are in `trend_tests.py`)
    theil_sen_slope  median of pairwise slopes; ~29 % of the points can be outliers without moving it.
    predict_linear   like Prometheus' predict_linear, but with the Theil-Sen line.
    time_to_limit    seconds from the newest point until that line reaches a limit.

Detectors (each returns a report or None) combine a significant Mann-Kendall trend (corrected for
autocorrelation) with a slope that matters and a newest half that still rises, so noise, persistent
noise, one-off steps, garbage-collector sawtooth and allocator jitter do not fire them. Each newer check
has a keyword to switch it off (old behaviour, for replaying workflow histories). The work is O(n²) in
pairs (Theil-Sen, Mann-Kendall, the n autocorrelation lags of Hamed-Rao: a few O(n²) passes per call),
meant for windows up to ~120 points; `TrendSeries` keeps such a window across continue-as-new.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autarky.autopilot.detectors.trend_tests import (
    STILL_GROWING_P,
    drift_p,
    format_p,
    significant_rise,
    still_rising_p,
)

TimeLike = float | datetime
MIB = 1024 * 1024
ROUND3_SLOWDOWN = 0.7  # detect_leak(round3): a newest half rising under 70 % of the oldest half's slope ...
ROUND3_SLOWDOWN_Z = 3.0  # ... by more than this many standard errors is a warm-up slowing down

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


def _slope_error(rows: Sequence[tuple[float, ...]], line: _Line) -> float:
    """Standard error of a fitted slope: robust residual spread / √Σ(t − t̄)², widened by √((1+ρ)/(1−ρ))
    for a positive lag-1 autocorrelation ρ of the residuals (persistent noise and a sawtooth carry less
    information than as many independent points)."""
    residuals = [v - line.at(t) for t, v, *_ in rows]
    centre = statistics.median(residuals)
    sigma = 1.4826 * statistics.median(abs(r - centre) for r in residuals)
    t_mean = statistics.fmean(row[0] for row in rows)
    spread = math.sqrt(sum((row[0] - t_mean) ** 2 for row in rows))
    deviations = [r - statistics.fmean(residuals) for r in residuals]
    denominator = sum(d * d for d in deviations)
    rho = sum(a * b for a, b in pairwise(deviations)) / denominator if denominator > 0 else 0.0
    rho = min(max(rho, 0.0), 0.95)
    return sigma / spread * math.sqrt((1 + rho) / (1 - rho)) if spread > 0 else math.inf


def _significant_slowdown(oldest: Sequence[tuple[float, ...]], newest: Sequence[tuple[float, ...]]) -> bool:
    """Whether the newest rows rise at most ROUND3_SLOWDOWN of the oldest rows' slope, and significantly
    (z > ROUND3_SLOWDOWN_Z) so: a logarithmic warm-up with τ of 30-60 min over a 2 h window slows down
    to 40-65 %, which the fixed ratio of `min_sustained_ratio` only catches part of the time, while a
    leak under noise or a sawtooth has half-window slopes too uncertain to call any difference."""
    old_line, new_line = _fit(oldest), _fit(newest)
    if old_line.slope <= 0 or new_line.slope >= ROUND3_SLOWDOWN * old_line.slope:
        return False
    error = math.hypot(_slope_error(oldest, old_line), _slope_error(newest, new_line))
    return old_line.slope - new_line.slope > ROUND3_SLOWDOWN_Z * error


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
            f"(Mann-Kendall {format_p(self.p_value)})"
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
    round3: bool = True,
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
    `round3` [False] (issue 29): (1) nor is one whose newest half rises under ROUND3_SLOWDOWN of the
    oldest half's slope, significantly (`_significant_slowdown`: τ = 30-60 min slows to 40-65 %, which
    the fixed ratio missed in a share of windows); (2) the whole-window test is corrected with
    `persistent_inflation` (Hamed-Rao under-corrects AR(1) noise with φ ≥ 0.9); (3) the newest half may
    hold up to two steps, each spread over up to 12 samples (`still_rising_p`).
    """
    rows = _clean(times, rss_bytes)
    if len(rows) < min_points:
        return None
    span = rows[-1][0] - rows[0][0]
    if span < min_span_seconds or span <= 0:
        return None
    values = [v for _, v in rows]
    mk = significant_rise(values, p_value, autocorrelation=False)  # cheap first; corrected last
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
    if (
        len(newest_half) < 5
        or still_rising_p(newest_half, step_robust=step_robust, round3=round3) >= STILL_GROWING_P
    ):
        return None
    # ... and at about the same rate: a cache warming up logarithmically still rises in the newest half,
    # but several times more slowly than in the oldest half. (A leak starting mid-window passes: its
    # oldest half is flat.)
    if min_sustained_ratio > 0 and half >= 2:
        oldest_slope, newest_slope = _fit(rows[:half]).slope, _fit(rows[half:]).slope
        if oldest_slope > 0 and newest_slope < min_sustained_ratio * oldest_slope:
            return None
        if round3 and _significant_slowdown(rows[:half], rows[half:]):
            return None
    if autocorrelation:
        mk = significant_rise(values, p_value, autocorrelation=True, persistent=round3)
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
            f"(Mann-Kendall {format_p(self.p_value)}), now {_fmt_value(round(self.current, 1), self.unit)}"
        )
        if self.time_to_limit_seconds == 0:
            return text + f"; already at the limit of {_fmt_value(self.limit, self.unit)}"
        return text + (
            f"; reaches {_fmt_value(self.limit, self.unit)} in {_fmt_duration(self.time_to_limit_seconds)}"
        )


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
    round3: bool = True,
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
    `round3` [False]: the newest half may hold up to two steps, each spread over up to 12 samples
    (`still_rising_p`, issue 29).
    """
    rows = _clean(times, values)
    if len(rows) < min_points:
        return None
    series = [v for _, v in rows]
    mk = significant_rise(series, p_value, autocorrelation=False)  # cheap first; corrected last
    if mk is None:
        return None
    line = _fit(rows)
    ttl = line.seconds_to(limit, rows[-1][1])
    if ttl is None or ttl >= horizon_seconds:
        return None
    if still_rising and still_rising_p(series[len(series) // 2 :], round3=round3) >= STILL_GROWING_P:
        return None
    if drift and drift_p(series) >= p_value:
        return None
    if autocorrelation:
        mk = significant_rise(series, p_value, autocorrelation=True)
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
            f"(Mann-Kendall {format_p(self.signal_p_value)}) while CPU rises "
            f"{_fmt_rate(self.cpu_slope_percent_per_second, '%')} ({format_p(self.cpu_p_value)}): "
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
    signal_mk = significant_rise([r[1] for r in rows], p_value, autocorrelation)
    if signal_mk is None:
        return None
    cpu_mk = significant_rise([r[2] for r in rows], p_value, autocorrelation)
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
