"""False-alarm rates of the trend tests on autocorrelated noise (issue 17), measured over many windows.

Each noise model is drawn 2000 times (120 points, one a minute: the product's window) from a seeded
random.Random, so every run sees the same windows. The nominal one-sided level is 0.1 % (early_warning's
p_value), i.e. about 2 false alarms in 2000 windows; the bound asserted is 0.5 % (10 windows): under
the nominal rate, 11 or more in 2000 has a probability of about 1e-5, while the uncorrected test's
rates on persistent noise (10 % - 40 %) are far above it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import cache

import pytest

from autarky.autopilot.detectors.trend import detect_leak, early_warning
from autarky.autopilot.detectors.trend_tests import drift_p, hamed_rao_inflation, mann_kendall

WINDOWS = 2000
POINTS = 120
TIMES = [60.0 * i for i in range(POINTS)]
NOMINAL = 0.001
BOUND = 0.005  # see the module docstring
HORIZON = 6 * 3600.0  # the product's early-warning horizon
MIB = 1024 * 1024

Noise = Callable[[random.Random], list[float]]


def white(rng: random.Random) -> list[float]:
    return [rng.gauss(0, 1) for _ in range(POINTS)]


def ar1(rng: random.Random, phi: float = 0.95) -> list[float]:
    x = rng.gauss(0, 1 / math.sqrt(1 - phi * phi))  # start in the stationary distribution
    out = []
    for _ in range(POINTS):
        x = phi * x + rng.gauss(0, 1)
        out.append(x)
    return out


def random_walk(rng: random.Random) -> list[float]:
    x, out = 0.0, []
    for _ in range(POINTS):
        x += rng.gauss(0, 1)
        out.append(x)
    return out


def walk_under_noise(rng: random.Random) -> list[float]:
    # A walk of 1/3 a step under white noise of 1 (scaled below like the others): a walk the noise hides.
    return [x / 3 + rng.gauss(0, 1) for x in random_walk(rng)]


MODELS: dict[str, Noise] = {
    "white": white,
    "ar1": ar1,
    "random walk": random_walk,
    "walk under noise": walk_under_noise,
}
# As the product would see them: disk % near its 95 % limit (time to limit rarely the obstacle), with
# the noise scaled to what a disk or a temperature does (white ±1 %, AR(1) of stationary sd ≈ 1 %,
# a walk of 0.1 % a minute).
DISK = {"white": (90.0, 1.0), "ar1": (90.0, 0.3), "random walk": (90.0, 0.1), "walk under noise": (90.0, 0.3)}


@cache
def rates(model: str) -> dict[str, float]:
    """Share of windows with: a plain / a corrected Mann-Kendall rise at p < 0.1 %, an early warning."""
    rng = random.Random(f"issue 17 {model}")
    level, scale = DISK[model]
    raw = corrected = warned = 0
    for _ in range(WINDOWS):
        noise = MODELS[model](rng)
        mk = mann_kendall(noise)
        if mk.s > 0 and mk.p_increasing < NOMINAL:
            raw += 1
            # The correction only ever lowers z, so it need only run where the plain test fired.
            corrected += mann_kendall(noise, autocorrelation=True).p_increasing < NOMINAL
        disk = [level + scale * x for x in noise]
        warned += early_warning(TIMES, disk, 95.0, HORIZON, p_value=NOMINAL) is not None
    return {"raw": raw / WINDOWS, "corrected": corrected / WINDOWS, "early_warning": warned / WINDOWS}


def test_white_noise_holds_the_nominal_level() -> None:
    r = rates("white")
    # Without autocorrelation the correction must not cost anything: same level as the plain test.
    assert r["raw"] <= BOUND and r["corrected"] <= BOUND and r["early_warning"] <= BOUND


@pytest.mark.parametrize("model", ["ar1", "random walk"])
@pytest.mark.slow
def test_the_correction_cuts_false_alarms_on_persistent_noise(model: str) -> None:
    r = rates(model)
    # Measured: plain 29.8 % (AR(1)) and 40.4 % (walk) of windows "rise" at p < 0.1 %; Hamed-Rao halves
    # that or better. The early warning also needs the newest half to rise and the limit in reach.
    assert r["raw"] > 0.1  # the problem is real in this setup
    assert r["corrected"] <= 0.6 * r["raw"]
    assert r["early_warning"] <= 0.6 * r["raw"]


@pytest.mark.parametrize("model", ["ar1", "random walk", "walk under noise"])
@pytest.mark.slow
def test_persistent_noise_holds_the_nominal_level(model: str) -> None:
    # Measured before issue 17: 16.6 % (AR(1)) and 17.3 % (walk) of windows warned; Hamed-Rao alone left
    # ~6 % and ~12 %. The drift test against a random walk (trend.drift_p) brings both to the nominal level.
    assert rates(model)["early_warning"] <= BOUND


@pytest.mark.parametrize("model", ["ar1", "random walk"])
def test_persistent_temperature_does_not_warn(model: str) -> None:
    # A temperature share wandering around 80 % of critical (AR(1) of sd ≈ 6, or a walk of 0.5 a minute).
    rng = random.Random(f"issue 17 temperature {model}")
    scale = 2.0 if model == "ar1" else 0.5
    warned = sum(
        early_warning(TIMES, [80 + scale * x for x in MODELS[model](rng)], 100.0, HORIZON) is not None
        for _ in range(WINDOWS // 2)
    )
    assert warned / (WINDOWS // 2) <= BOUND


def test_hamed_rao_inflation_by_case() -> None:
    assert hamed_rao_inflation([1.0, 2.0, 3.0]) == 1.0  # too short to estimate anything
    assert hamed_rao_inflation([2.0 * i for i in range(50)]) == 1.0  # exact line: residuals all tied
    rng = random.Random(3)
    # Persistent noise inflates the variance several times; white noise hardly at all.
    assert sorted(hamed_rao_inflation(ar1(rng)) for _ in range(21))[10] > 2.5
    assert sorted(hamed_rao_inflation(white(rng)) for _ in range(21))[10] < 1.5


def test_the_corrected_test_keeps_its_power_on_a_real_fill() -> None:
    rng = random.Random(8)
    disk = [60 + 0.05 * i + rng.gauss(0, 0.3) for i in range(POINTS)]  # +6 % over two hours
    mk = mann_kendall(disk, autocorrelation=True)
    assert mk.trend == "increasing" and mk.p_increasing < 1e-6


def test_leak_false_alarms_on_persistent_rss() -> None:
    # RSS of 300 MiB wandering like an AR(1) of stationary sd ≈ 10 MiB: within the leak's 5 % floors.
    rng = random.Random("issue 17 leak")
    new = old = 0
    windows = 500  # the leak test is the costly one (several O(n²) fits per window)
    for _ in range(windows):
        rss = [(300 + 3 * x) * MIB for x in ar1(rng)]
        new += detect_leak(TIMES, rss, 8 * 1024 * MIB) is not None
        old += (
            detect_leak(
                TIMES, rss, 8 * 1024 * MIB, autocorrelation=False, step_robust=False, min_sustained_ratio=0
            )
            is not None
        )
    # Measured 8.0 % before and 7.2 % after (nominal 1 %): the correction removes alarms, never adds any;
    # the remaining ones are the gap reported for issue 17.
    assert new < old
    assert new / windows <= 0.08


@pytest.mark.parametrize(
    ("what", "level", "slope", "sd", "limit"),
    [
        ("disk %", 76.0, 0.05, 0.5, 95.0),  # 4 h from full at the window's end
        ("temperature share", 70.0, 0.2, 2.0, 100.0),  # 30 min from critical
    ],
)
def test_noisy_real_rises_still_warn(what: str, level: float, slope: float, sd: float, limit: float) -> None:
    # The checks against persistent noise must not cost the warnings they exist for: a steady rise under
    # white noise of this size warns in nearly every window.
    rng = random.Random(f"issue 17 power {what}")
    windows = 200
    warned = sum(
        early_warning(TIMES, [level + slope * i + rng.gauss(0, sd) for i in range(POINTS)], limit, HORIZON)
        is not None
        for _ in range(windows)
    )
    # Measured 94.5 % for both (the margin against walks hidden under noise costs a little power).
    assert warned / windows >= 0.9


def test_drift_p_tells_a_noisy_trend_from_a_walk() -> None:
    rng = random.Random(17)
    trend = [0.05 * i + rng.gauss(0, 1.0) for i in range(POINTS)]
    assert drift_p(trend) < 1e-4
    # Under a zero-drift walk the p-value is about uniform: about a tenth of walks fall below 0.1.
    below = sum(drift_p(random_walk(rng)) < 0.1 for _ in range(1000))
    assert 50 <= below <= 150
    assert drift_p([5.0] * 30) == 1.0 and drift_p([float(i) for i in range(30)]) == 0.0
    assert drift_p([1.0, 2.0, 3.0]) == 1.0  # too short to judge
