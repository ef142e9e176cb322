"""Trend detectors: Theil-Sen, Mann-Kendall, time-to-limit, leaks, early warnings, overload, TrendSeries."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from autarky.autopilot.detectors.trend import (
    LeakReport,
    TrendSeries,
    detect_leak,
    early_warning,
    overload_warning,
    predict_linear,
    theil_sen_slope,
    time_to_limit,
)
from autarky.autopilot.detectors.trend_tests import mann_kendall, still_rising_p

MIB = 1024 * 1024
GIB = 1024 * MIB
SEEDS = [0, 1, 2, 3, 7, 42, 1234, 2026]

# ------------------------------------------------------------------------------------------- Theil-Sen


def test_theil_sen_on_an_exact_line() -> None:
    times = [0, 10, 20, 30, 45]
    assert theil_sen_slope(times, [3 + 2.5 * t for t in times]) == 2.5


def test_theil_sen_ignores_an_outlier_by_hand() -> None:
    # Six pairs among the first four points have slope 1; the outlier's pairs give 25, 33, 49, 97.
    # Sorted: 1 ×6, 25, 33, 49, 97 → median of the 5th and 6th = 1.
    assert theil_sen_slope([0, 1, 2, 3, 4], [0, 1, 2, 3, 100]) == 1


def test_theil_sen_with_20_percent_outliers() -> None:
    rng = random.Random(5)
    times = [float(t) for t in range(50)]
    values = [10 + 2 * t for t in times]
    for i in rng.sample(range(50), 10):
        values[i] += rng.choice([-1, 1]) * rng.uniform(200, 1000)
    assert theil_sen_slope(times, values) == pytest.approx(2, rel=0.05)


def test_theil_sen_skips_equal_times_and_needs_two_distinct() -> None:
    assert theil_sen_slope([0, 0, 10], [0, 5, 10]) == pytest.approx((1 + 0.5) / 2)
    with pytest.raises(ValueError, match="distinct"):
        theil_sen_slope([5, 5], [1, 2])
    with pytest.raises(ValueError):
        theil_sen_slope([1, 2, 3], [1, 2])


# ---------------------------------------------------------------------------------------- Mann-Kendall


def test_mann_kendall_increasing_by_hand() -> None:
    mk = mann_kendall([1, 2, 3, 4, 5])
    # S = 10 pairs, Var = 5·4·15/18 = 16.67, z = (10 - 1)/√16.67 = 2.2045, p = erfc(z/√2) = 0.0275.
    assert mk.s == 10 and mk.var_s == pytest.approx(50 / 3)
    assert mk.z == pytest.approx(9 / math.sqrt(50 / 3))
    assert mk.p_value == pytest.approx(0.0275, abs=1e-4)
    assert mk.p_increasing == pytest.approx(mk.p_value / 2)
    assert mk.trend == "increasing"
    assert "increasing" in mk.describe() and "S=10" in mk.describe()


def test_mann_kendall_decreasing() -> None:
    mk = mann_kendall([5, 4, 3, 2, 1])
    assert mk.s == -10 and mk.trend == "decreasing" and mk.z < 0
    assert mk.p_decreasing == pytest.approx(mk.p_value / 2)


def test_mann_kendall_constant_has_no_trend_and_no_division_by_zero() -> None:
    mk = mann_kendall([3, 3, 3, 3])
    assert (mk.s, mk.var_s, mk.z, mk.p_value, mk.trend) == (0, 0, 0, 1, "none")
    assert mann_kendall([]).trend == mann_kendall([1.0]).trend == "none"


def test_mann_kendall_tie_corrected_variance() -> None:
    mk = mann_kendall([1, 2, 2, 3])
    # Pairs: +, +, +, 0 (the tie), +, + → S = 5; Var = (4·3·13 − 2·1·9)/18 = 138/18.
    assert mk.s == 5
    assert mk.var_s == pytest.approx(138 / 18)
    assert mk.z == pytest.approx(4 / math.sqrt(138 / 18))
    assert mk.trend == "none"  # four points cannot be significant at 5 %


def test_mann_kendall_alpha_controls_the_trend_label() -> None:
    assert mann_kendall([1, 2, 3, 4, 5], alpha=0.01).trend == "none"


# ----------------------------------------------------------------------------- predict / time-to-limit


def test_predict_linear_by_hand() -> None:
    assert predict_linear([0, 1, 2, 3, 4], [3, 5, 7, 9, 11], at=10) == pytest.approx(23)
    # Slope 1 (see above), intercept = median(v − t) = median(0, 0, 0, 0, 96) = 0.
    assert predict_linear([0, 1, 2, 3, 4], [0, 1, 2, 3, 100], at=10) == pytest.approx(10)


def test_predict_linear_accepts_datetimes() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    times = [t0 + timedelta(minutes=i) for i in range(5)]
    at = t0 + timedelta(minutes=10)
    assert predict_linear(times, [3, 5, 7, 9, 11], at) == pytest.approx(23)
    naive = [t.replace(tzinfo=None) for t in times]  # naive = UTC
    assert predict_linear(naive, [3, 5, 7, 9, 11], at) == pytest.approx(23)


def test_time_to_limit_disk_by_hand() -> None:
    # Disk at 50 % after ten minutes of +1 %/min → 95 % in 45 min.
    times = [60.0 * i for i in range(11)]
    used = [40.0 + i for i in range(11)]
    assert time_to_limit(times, used, 95) == pytest.approx(45 * 60)


def test_time_to_limit_needs_two_distinct_times() -> None:
    with pytest.raises(ValueError):
        time_to_limit([], [], 95)
    with pytest.raises(ValueError):
        time_to_limit([0, 60], [50, None], 95)


def test_time_to_limit_never_when_slope_is_not_positive() -> None:
    assert time_to_limit([0, 60, 120], [50, 50, 50], 95) is None
    assert time_to_limit([0, 60, 120], [52, 51, 50], 95) is None


def test_time_to_limit_zero_when_already_over() -> None:
    assert time_to_limit([0, 60, 120], [96, 97, 98], 95) == 0
    assert time_to_limit([0, 60, 120], [95, 95, 95], 95) == 0
    # The fitted line (flat at 90) is below, but the newest sample is over: already there.
    assert time_to_limit([0, 60, 120, 180, 240], [90, 90, 90, 90, 96], 95) == 0


# ------------------------------------------------------------------------------------------------ leak


def sampled(hours: float, step_minutes: float) -> list[float]:
    return [i * step_minutes * 60.0 for i in range(int(hours * 60 / step_minutes) + 1)]


@pytest.mark.parametrize("seed", SEEDS)
def test_leak_detected_with_the_right_slope_and_time_to_limit(seed: int) -> None:
    rng = random.Random(seed)
    start_mib, growth_mib_h, limit = 200.0, 10.0, 1 * GIB
    times = sampled(hours=3, step_minutes=5)
    rss = [(start_mib + growth_mib_h * t / 3600 + rng.uniform(-3, 3)) * MIB for t in times]

    report = detect_leak(times, rss, limit, subject="pid 123")

    assert report is not None
    assert report.points == 37 and report.span_seconds == 3 * 3600
    assert report.slope_mib_per_hour == pytest.approx(growth_mib_h, rel=0.2)
    assert report.slope_bytes_per_second == pytest.approx(growth_mib_h * MIB / 3600, rel=0.2)
    true_ttl = (limit / MIB - (start_mib + growth_mib_h * 3)) / growth_mib_h * 3600  # 79.4 h
    assert report.time_to_limit_seconds == pytest.approx(true_ttl, rel=0.2)
    assert report.p_value < 0.01
    assert report.current_bytes == pytest.approx(230 * MIB, rel=0.02)
    assert report.describe().startswith("RSS of pid 123 grows ")
    assert "reaches the 1.0 GiB limit in" in report.describe()


@pytest.mark.parametrize("seed", SEEDS)
def test_flat_noisy_process_is_not_a_leak(seed: int) -> None:
    rng = random.Random(seed)
    times = sampled(hours=3, step_minutes=5)
    rss = [(200 + rng.uniform(-3, 3)) * MIB for _ in times]
    assert detect_leak(times, rss, GIB) is None


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("phase_minutes", [0, 10, 20, 25])
def test_gc_sawtooth_is_not_a_leak(seed: int, phase_minutes: float) -> None:
    # Grows 40 MiB over 30 min, then the collector drops it back to 200 MiB; six cycles in the window.
    rng = random.Random(seed)
    times = sampled(hours=3, step_minutes=5)
    rss = [(200 + 40 * ((t / 60 + phase_minutes) % 30) / 30 + rng.uniform(-3, 3)) * MIB for t in times]
    assert detect_leak(times, rss, GIB) is None


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_leak_under_a_gc_sawtooth_is_still_found(seed: int) -> None:
    rng = random.Random(seed)
    times = sampled(hours=3, step_minutes=5)
    rss = [(200 + 10 * t / 3600 + 40 * (t / 60 % 30) / 30 + rng.uniform(-3, 3)) * MIB for t in times]
    report = detect_leak(times, rss, GIB)
    assert report is not None and report.slope_mib_per_hour == pytest.approx(10, rel=0.3)


def test_warm_up_then_plateau_is_not_a_leak() -> None:
    rng = random.Random(1)
    times = sampled(hours=3, step_minutes=5)
    rss = [(100 + 100 * min(t / 1800, 1) + rng.uniform(-3, 3)) * MIB for t in times]
    assert detect_leak(times, rss, GIB) is None


def test_leak_needs_enough_points_and_span() -> None:
    times = sampled(hours=3, step_minutes=5)
    rss = [(200 + 10 * t / 3600) * MIB for t in times]
    assert detect_leak(times, rss, GIB) is not None
    assert detect_leak(times[:9], rss[:9], GIB) is None  # 9 < min_points
    assert detect_leak(times[:6], rss[:6], GIB, min_points=5) is None  # 25 min < min_span_seconds
    missing = [None if i % 4 else v for i, v in enumerate(rss)]  # 10 usable points left
    assert detect_leak(times, missing, GIB) is not None


def test_leak_without_limit_and_over_limit() -> None:
    times = sampled(hours=3, step_minutes=5)
    rss = [(200 + 10 * t / 3600) * MIB for t in times]
    no_limit = detect_leak(times, rss, None)
    assert no_limit is not None and no_limit.time_to_limit_seconds is None
    assert no_limit.describe().endswith("no memory limit known")
    over = detect_leak(times, rss, 220 * MIB)
    assert over is not None and over.time_to_limit_seconds == 0
    assert "already at the 220.0 MiB limit" in over.describe()


def test_leak_describe_one_line() -> None:
    report = LeakReport(
        subject="pid 123",
        slope_bytes_per_second=12 * MIB / 3600,
        slope_mib_per_hour=12.0,
        current_bytes=1.5 * GIB,
        limit_bytes=2 * GIB,
        time_to_limit_seconds=3.1 * 3600,
        p_value=0.0001,
        points=36,
        span_seconds=3 * 3600,
        relative_growth=0.1,
        relative_floor_rise=0.07,
    )
    assert report.describe() == (
        "RSS of pid 123 grows 12.0 MiB/h (Mann-Kendall p=0.0001); reaches the 2.0 GiB limit in 3.1 h"
    )


# --------------------------------------------------------------------------------------- early warning


@pytest.mark.parametrize("seed", SEEDS)
def test_disk_filling_warns_with_the_right_time_to_limit(seed: int) -> None:
    rng = random.Random(seed)
    times = sampled(hours=1 / 3, step_minutes=1)  # 21 samples over 20 min
    used = [30 + t / 60 + rng.uniform(-0.3, 0.3) for t in times]  # +1 %/min, at 50 % now
    warning = early_warning(times, used, 95, horizon_seconds=3600, subject="disk / used", unit="%")
    assert warning is not None
    assert warning.time_to_limit_seconds == pytest.approx(45 * 60, rel=0.1)
    assert warning.slope_per_second * 60 == pytest.approx(1, rel=0.1)
    text = warning.describe()
    assert text.startswith("disk / used rises ") and " %/min (Mann-Kendall p=" in text
    assert "reaches 95 % in 4" in text


def test_disk_filling_exact_line_and_beyond_the_horizon() -> None:
    times = [60.0 * i for i in range(11)]
    used = [40.0 + i for i in range(11)]
    warning = early_warning(times, used, 95, horizon_seconds=3600)
    assert warning is not None and warning.time_to_limit_seconds == pytest.approx(2700)
    assert early_warning(times, used, 95, horizon_seconds=30 * 60) is None  # 45 min > 30 min horizon
    assert early_warning(times[:7], used[:7], 95, horizon_seconds=3600) is None  # < min_points


def test_already_over_the_limit_warns_only_while_rising() -> None:
    times = [60.0 * i for i in range(11)]
    rising = early_warning(times, [90.0 + i for i in range(11)], 95, horizon_seconds=3600, unit="%")
    assert rising is not None and rising.time_to_limit_seconds == 0
    assert rising.describe().endswith("already at the limit of 95 %")
    assert early_warning(times, [97.0] * 11, 95, horizon_seconds=3600) is None  # a threshold rule's job


@pytest.mark.parametrize("seed", SEEDS)
def test_flat_noisy_disk_does_not_warn(seed: int) -> None:
    rng = random.Random(seed)
    times = sampled(hours=1, step_minutes=1)
    used = [94 + rng.uniform(-0.5, 0.5) for _ in times]  # close to the limit, but not rising
    assert early_warning(times, used, 95, horizon_seconds=24 * 3600) is None


@pytest.mark.parametrize("seed", SEEDS)
def test_thermal_rising_towards_critical_warns(seed: int) -> None:
    rng = random.Random(seed)
    times = sampled(hours=1 / 6, step_minutes=0.5)  # every 30 s for 10 min
    celsius = [60 + 0.5 * t / 60 + rng.uniform(-0.3, 0.3) for t in times]  # 65 °C now, +0.5 °C/min
    warning = early_warning(times, celsius, 90, horizon_seconds=3600, subject="CPU package", unit="°C")
    assert warning is not None
    assert warning.time_to_limit_seconds == pytest.approx((90 - 65) / 0.5 * 60, rel=0.2)  # 50 min
    assert "°C/min" in warning.describe() and "reaches 90 °C in" in warning.describe()


# -------------------------------------------------------------------------------------------- overload


def load_and_cpu(seed: int, latency_rises: bool, cpu_rises: bool) -> tuple[list[float], list, list]:
    rng = random.Random(seed)
    times = sampled(hours=0.5, step_minutes=0.5)  # 61 samples over 30 min
    latency = [100 + (2 * t / 60 if latency_rises else 0) + rng.uniform(-5, 5) for t in times]
    cpu = [40 + (1 * t / 60 if cpu_rises else 0) + rng.uniform(-3, 3) for t in times]
    return times, latency, cpu


@pytest.mark.parametrize("seed", SEEDS)
def test_overload_when_latency_and_cpu_both_rise(seed: int) -> None:
    warning = overload_warning(*load_and_cpu(seed, latency_rises=True, cpu_rises=True))
    assert warning is not None
    assert warning.signal_slope_per_second * 60 == pytest.approx(2, rel=0.2)
    assert warning.cpu_slope_percent_per_second * 60 == pytest.approx(1, rel=0.2)
    assert warning.points == 61
    assert warning.describe().startswith("latency rises ") and " ms/min (Mann-Kendall" in warning.describe()
    assert "while CPU rises " in warning.describe() and "%/min" in warning.describe()


@pytest.mark.parametrize("seed", SEEDS)
def test_no_overload_when_only_one_rises(seed: int) -> None:
    assert overload_warning(*load_and_cpu(seed, latency_rises=True, cpu_rises=False)) is None
    assert overload_warning(*load_and_cpu(seed, latency_rises=False, cpu_rises=True)) is None
    assert overload_warning(*load_and_cpu(seed, latency_rises=False, cpu_rises=False)) is None


def test_overload_skips_missing_latency_pairwise() -> None:
    times, latency, cpu = load_and_cpu(3, latency_rises=True, cpu_rises=True)
    gappy = [None if i % 3 == 0 else v for i, v in enumerate(latency)]
    warning = overload_warning(times, gappy, cpu, signal_name="queue backlog", signal_unit="jobs")
    assert warning is not None and warning.points == 40
    assert warning.describe().startswith("queue backlog rises")


# ------------------------------------------------------------------------------------------ TrendSeries


def test_trend_series_spacing() -> None:
    series = TrendSeries(min_spacing_seconds=60)
    assert series.add(0, 1.0)
    assert not series.add(30, 2.0)  # too close to the last kept one
    assert series.add(60, 3.0)
    assert series.add(datetime.fromtimestamp(200, UTC), 5.0)
    assert series.times == [0, 60, 200] and series.values == [1, 3, 5]


def test_trend_series_follows_a_clock_set_back() -> None:
    series = TrendSeries(min_spacing_seconds=60)
    for t in (3600, 3660, 3720):
        series.add(t, float(t))
    # The clock goes back an hour: the point is kept, the history moved back one spacing before it.
    assert series.add(180, 1.0)
    assert series.times == [0, 60, 120, 180] and series.values == [3600, 3660, 3720, 1]
    assert not series.add(200, 2.0)  # spacing still holds after the step
    # Round 1 (kept for older workflow histories) dropped such a point.
    assert not series.add(10, 3.0, follow_clock_steps=False)
    assert series.times == [0, 60, 120, 180]


def test_trend_series_keeps_only_the_newest_points() -> None:
    series = TrendSeries(max_points=5)
    for i in range(12):
        series.add(i, float(i))
    assert series.times == [7, 8, 9, 10, 11] and series.values == [7, 8, 9, 10, 11]


def test_trend_series_json_round_trip() -> None:
    series = TrendSeries(max_points=4, min_spacing_seconds=10)
    for t, v in [(0, 1.5), (10, None), (20, float("nan")), (35, 2.5)]:
        series.add(t, v)
    restored = TrendSeries.model_validate_json(series.model_dump_json())
    assert restored == series
    assert restored.values == [1.5, None, None, 2.5]
    restored.add(40, 3.0)  # keeps its settings: spacing 10 after 35
    assert restored.times[-1] == 35


def test_trend_series_validation() -> None:
    with pytest.raises(ValidationError):
        TrendSeries(times=[1, 2], values=[1.0])
    assert TrendSeries(max_points=2, times=[1, 2, 3], values=[1, 2, 3]).times == [2, 3]


def test_trend_series_feeds_a_detector() -> None:
    series = TrendSeries(max_points=40, min_spacing_seconds=300)
    for i in range(300):  # a sample every minute for 5 h; one in five is kept, the newest 40
        series.add(60.0 * i, (200 + 10 * i / 60) * MIB)
    assert len(series.times) == 40 and series.times[-1] - series.times[-2] == 300
    report = detect_leak(series.times, series.values, GIB)
    assert report is not None and report.slope_mib_per_hour == pytest.approx(10)


# ---------------------------------------------------------------------------------------------- properties

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def series(draw: st.DrawFn, min_size: int = 2) -> tuple[list[float], list[float]]:
    gaps = draw(st.lists(st.floats(min_value=1, max_value=1000), min_size=min_size, max_size=30))
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    return times, draw(st.lists(finite, min_size=len(times), max_size=len(times)))


@given(series(), finite)
def test_theil_sen_ignores_a_constant_offset(data: tuple[list[float], list[float]], offset: float) -> None:
    times, values = data
    shifted = theil_sen_slope(times, [v + offset for v in values])
    assert shifted == pytest.approx(theil_sen_slope(times, values), rel=1e-9, abs=1e-6)


@given(series(), st.floats(min_value=-100, max_value=100, allow_nan=False))
def test_theil_sen_scales_with_the_values(data: tuple[list[float], list[float]], k: float) -> None:
    times, values = data
    scaled = theil_sen_slope(times, [k * v for v in values])
    assert scaled == pytest.approx(k * theil_sen_slope(times, values), rel=1e-9, abs=1e-4)


@given(st.lists(st.integers(min_value=-5, max_value=5), max_size=40))
def test_mann_kendall_of_the_reversed_series_is_negated(values: list[int]) -> None:
    forward, backward = mann_kendall(values), mann_kendall(values[::-1])
    assert backward.s == -forward.s
    assert backward.var_s == forward.var_s and backward.p_value == pytest.approx(forward.p_value)


# ------------------------------------------------------------------------- issue 17: steps and warm-ups

PRODUCT_TIMES = [60.0 * i for i in range(120)]  # the product's window: 120 points, one a minute
OLD_WARNING = {"autocorrelation": False, "still_rising": False, "drift": False}
OLD_LEAK = {"autocorrelation": False, "step_robust": False, "min_sustained_ratio": 0.0}


@pytest.mark.parametrize("position", [1 / 3, 1 / 2, 3 / 4, 0.9])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_a_disk_step_is_not_a_fill(position: float, seed: int) -> None:
    # 80 % → 88 % once (a big file written), then flat: no disk_full_soon, so no clear_cache.
    rng = random.Random(seed)
    k = int(position * 120)
    used = [round(80 + (8 if i >= k else 0) + rng.gauss(0, 0.3), 1) for i in range(120)]
    assert early_warning(PRODUCT_TIMES, used, 95, 6 * 3600) is None


def test_a_disk_step_used_to_warn() -> None:
    # The case the issue is about: with the old behaviour an early step extrapolates to the limit.
    rng = random.Random(1)
    used = [80 + (8 if i >= 40 else 0) + rng.gauss(0, 0.3) for i in range(120)]
    assert early_warning(PRODUCT_TIMES, used, 95, 6 * 3600, **OLD_WARNING) is not None
    assert early_warning(PRODUCT_TIMES, used, 95, 6 * 3600) is None


@pytest.mark.parametrize("width", [1, 2, 3])
def test_still_rising_takes_one_step_out(width: int) -> None:
    # A step at 3/4 of the newest half (spread over `width` samples) looks significant to a rank test.
    rng = random.Random(width)
    half = [80 + 8 * min(max(i - 44, 0), width) / width + rng.gauss(0, 0.3) for i in range(60)]
    assert still_rising_p(half, step_robust=False) < 0.001
    assert still_rising_p(half) >= 0.05
    steady = [80 + 0.05 * i + rng.gauss(0, 0.3) for i in range(60)]
    assert still_rising_p(steady) < 0.001


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_a_realistic_fill_warns_hours_before_the_limit(seed: int) -> None:
    # 0.05 %/min from 60 %, noise of 0.3 %, psutil's 0.1 % resolution; the product checks the newest
    # 120 points. The 6 h horizon is reached at 77 %; the warning must come well before 95 %.
    rng = random.Random(seed)
    used = [round(60 + 0.05 * i + rng.gauss(0, 0.3), 1) for i in range(700)]
    times = [60.0 * i for i in range(700)]
    first = next(
        i for i in range(120, 700, 5) if early_warning(times[i - 120 : i], used[i - 120 : i], 95, 6 * 3600)
    )
    minutes_left = (95 - (60 + 0.05 * first)) / 0.05
    assert minutes_left >= 5 * 60


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_an_accelerating_fill_warns(seed: int) -> None:
    # 0.01 %/min growing to 0.13 %/min over two hours (a log that grows faster and faster), now at 80 %.
    rng = random.Random(seed)
    used = [72.2 + 0.01 * i + 0.0005 * i * i + rng.gauss(0, 0.3) for i in range(120)]
    warning = early_warning(PRODUCT_TIMES, used, 95, 6 * 3600)
    assert warning is not None and warning.time_to_limit_seconds < 4 * 3600


def test_a_short_exact_fill_still_warns() -> None:
    # 8 points (min_points): the newest half is 4 exact steps up, p = 0.045 < STILL_GROWING_P.
    times = [60.0 * i for i in range(8)]
    assert early_warning(times, [80.0 + i for i in range(8)], 95, 3600) is not None


@pytest.mark.parametrize("position", [1 / 3, 1 / 2, 3 / 4, 0.9])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_a_one_off_rss_step_is_not_a_leak(position: float, seed: int) -> None:
    rng = random.Random(seed)
    k = int(position * 120)
    rss = [(300 + (60 if i >= k else 0) + rng.uniform(-3, 3)) * MIB for i in range(120)]
    assert detect_leak(PRODUCT_TIMES, rss, GIB, min_span_seconds=1800) is None


@pytest.mark.parametrize("tau_minutes", [2, 5, 10, 20])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_a_logarithmic_cache_warm_up_is_not_a_leak(tau_minutes: float, seed: int) -> None:
    # RSS = 300 MiB + 30 MiB · log(1 + t/τ) from process start: it never levels off, but slows down.
    rng = random.Random(seed)
    rss = [(300 + 30 * math.log(1 + i / tau_minutes) + rng.uniform(-3, 3)) * MIB for i in range(120)]
    assert detect_leak(PRODUCT_TIMES, rss, GIB) is None
    if tau_minutes <= 10:  # the sustained-rate check is what stops it (the old one fires)
        assert detect_leak(PRODUCT_TIMES, rss, GIB, min_sustained_ratio=0.0) is not None


@pytest.mark.parametrize("seed", SEEDS)
def test_a_product_leak_under_a_gc_sawtooth_is_found(seed: int) -> None:
    # 20 MiB/h on 300 MiB, a 40 MiB sawtooth every 30 min at a random phase, ±3 MiB noise; 1/min.
    rng = random.Random(seed)
    phase = rng.randrange(30)
    rss = [(300 + 20 * i / 60 + 40 * ((i + phase) % 30) / 30 + rng.uniform(-3, 3)) * MIB for i in range(120)]
    report = detect_leak(PRODUCT_TIMES, rss, GIB)
    assert report is not None and report.slope_mib_per_hour == pytest.approx(20, rel=0.5)


def test_a_leak_starting_mid_window_is_found() -> None:
    # Flat for an hour, then 30 MiB/h: the oldest half is flat, so the sustained-rate check passes.
    rng = random.Random(4)
    rss = [(300 + 0.5 * max(i - 60, 0) + rng.uniform(-3, 3)) * MIB for i in range(120)]
    assert detect_leak(PRODUCT_TIMES, rss, GIB) is not None


def test_overload_autocorrelation_can_be_switched_off() -> None:
    times, latency, cpu = load_and_cpu(2, latency_rises=True, cpu_rises=True)
    new = overload_warning(times, latency, cpu)
    old = overload_warning(times, latency, cpu, autocorrelation=False)
    assert new is not None and old is not None
    assert new.signal_p_value >= old.signal_p_value  # the correction never makes a rise more significant
