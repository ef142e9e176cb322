"""The streaming anomaly detector on shapes whose right answer is known."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from autarky.autopilot.detectors.anomaly import DEFAULT_INTERVAL, AnomalyConfig, AnomalyDetector, AnomalyState
from autarky.autopilot.settings import AnalysisSettings

CONFIG = AnomalyConfig()  # the defaults: the same configuration NAB is scored with
# Scores at or above this become findings in the autopilot: noise and drift must stay below it.
FINDING = AnalysisSettings().anomaly_threshold
WARMUP = 300
# The forgetting tests count in values: without timestamps a detector takes them to come every
# DEFAULT_INTERVAL (30 s), so this memory is MEMORY values. Every raw score is passed on as it is (no
# collapse, events forgotten at once): these tests are of the levels' memory; the alerting layer's are
# in test_anomaly_round3.py.
MEMORY = 1000
FORGETFUL = AnomalyConfig(
    memory_hours=MEMORY * DEFAULT_INTERVAL / 3600, collapse_hours=0, event_half_life_hours=1e-3
)


def noisy(n: int, level: float = 50.0, sigma: float = 1.0, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0, sigma) for _ in range(n)]


def scores(values: list[float], config: AnomalyConfig = CONFIG) -> list[float]:
    detector = AnomalyDetector(config)
    return [detector.update(v) for v in values]


def test_flat_line_scores_zero_and_a_change_after_it_scores_high() -> None:
    flat = [42.0] * WARMUP
    assert max(scores(flat)) == 0.0
    after = scores([*flat, 43.0])
    assert after[-1] > 0.9  # anything off a perfectly flat line is very unusual


def test_spike_scores_high_once_and_the_noise_around_it_scores_low() -> None:
    series = noisy(WARMUP + 100)
    series[WARMUP] = 80.0  # 30 σ
    result = scores(series)
    assert result[WARMUP] > 0.85
    assert max(result[:WARMUP]) < FINDING  # plain noise before it
    assert max(result[WARMUP + 1 :]) < result[WARMUP]  # reported once, not again while it settles


def test_step_change_is_reported_at_its_start_not_at_every_value_after() -> None:
    series = noisy(WARMUP) + noisy(200, level=70.0, seed=1)
    result = scores(series)
    assert result[WARMUP] > 0.85
    high_after = [i for i, s in enumerate(result[WARMUP + 1 :], start=WARMUP + 1) if s > 0.5]
    assert len(high_after) <= 2, high_after  # suppression: a lasting change is one event


def test_slow_drift_is_not_an_anomaly() -> None:
    # 0.01 σ per value: new highs all the time, but each a small step from the recent normal.
    rng = random.Random(3)
    series = [50.0 + 0.01 * i + rng.gauss(0, 1.0) for i in range(3000)]
    result = scores(series)
    assert max(result[WARMUP:]) < FINDING


def test_expected_range_and_z_are_the_evidence_for_a_score() -> None:
    detector = AnomalyDetector(CONFIG)
    for v in noisy(WARMUP):
        detector.update(v)
    detector.update(80.0)
    assert detector.expected is not None
    low, high = detector.expected
    assert low < 50.0 < high and high < 80.0
    assert detector.z > 10


def test_state_round_trips_and_resuming_gives_the_same_scores() -> None:
    series = noisy(600, seed=5)
    series[450] = 90.0
    uninterrupted = scores(series)

    first = AnomalyDetector(CONFIG)
    resumed_scores = [first.update(v) for v in series[:400]]
    saved = first.state.model_dump_json()  # what continue-as-new carries
    second = AnomalyDetector(CONFIG, AnomalyState.model_validate_json(saved))
    resumed_scores += [second.update(v) for v in series[400:]]

    assert resumed_scores == uninterrupted
    assert second.state == AnomalyState.model_validate_json(second.state.model_dump_json())


def test_state_stays_small() -> None:
    detector = AnomalyDetector(CONFIG)
    for v in noisy(5000, seed=7):
        detector.update(v)
    # the window (128 floats), 17 level counts and a short score history, as JSON
    assert detector.state_size_bytes() < 8000


@given(st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=400))
def test_scores_are_always_in_zero_one(values: list[float]) -> None:
    detector = AnomalyDetector(AnomalyConfig(min_history=5, window=16))
    for v in values:
        assert 0.0 <= detector.update(v) <= 1.0


@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
            st.sampled_from([math.nan, math.inf, -math.inf]),
        ),
        max_size=400,
    )
)
def test_bad_values_are_skipped_and_counted_and_the_state_round_trips(values: list[float]) -> None:
    config = AnomalyConfig(window=16, min_history=20, suppression=5)
    detector = AnomalyDetector(config)
    scores = [detector.update(v) for v in values]
    state = detector.state
    assert state.skipped == sum(1 for v in values if not math.isfinite(v))
    assert all(math.isfinite(v) for v in state.window)
    assert all(0.0 <= s <= 1.0 for s in scores)
    restored = AnomalyState.model_validate_json(state.model_dump_json())
    assert restored == state
    resumed = AnomalyDetector(config, restored)
    assert [resumed.update(v) for v in (1.0, math.nan, 500.0)] == [
        detector.update(v) for v in (1.0, math.nan, 500.0)
    ]


def test_one_inf_does_not_blind_the_detector() -> None:
    detector = AnomalyDetector(CONFIG)
    for v in noisy(WARMUP):
        detector.update(v)
    assert detector.update(math.inf) == 0.0
    fresh = AnomalyDetector(CONFIG)
    for v in noisy(WARMUP):
        fresh.update(v)
    assert detector.update(95.0) == fresh.update(95.0) > 0.9  # a real spike after it scores as before


# --- forgetting: a detector lives for months ------------------------------------------------------------


def spike_after(history: list[float], spike: float, config: AnomalyConfig = FORGETFUL) -> float:
    detector = AnomalyDetector(config)
    for v in history:
        detector.update(v)
    return detector.update(spike)


def test_one_burst_does_not_dull_the_detector_for_good() -> None:
    # CPU around 20 %; one burst to 100 %; then a day and a half of normal load; then a 70 % spike.
    normal = noisy(1000, level=20.0, sigma=3.0, seed=7)
    later = noisy(MEMORY + MEMORY // 2, level=20.0, sigma=3.0, seed=8)
    without = spike_after(normal + later, 70.0)
    with_burst = spike_after([*normal, *[100.0] * 5, *later], 70.0)
    assert without > 0.8
    assert with_burst >= 0.95 * without
    # Round 1's detector, which never forgets, is the issue's case: the burst keeps 70 % ordinary.
    never = FORGETFUL.model_copy(update={"memory_hours": 0})
    assert spike_after([*normal, *[100.0] * 5, *later], 70.0, never) < 0.5 * without


def test_one_latency_glitch_does_not_dull_the_detector_for_good() -> None:
    # Latency around 5 ms; one 500 ms glitch; later a 50 ms spike.
    normal = noisy(1000, level=5.0, sigma=0.5, seed=9)
    later = noisy(MEMORY + MEMORY // 2, level=5.0, sigma=0.5, seed=10)
    without = spike_after(normal + later, 50.0)
    assert spike_after([*normal, 500.0, *later], 50.0) >= 0.95 * without > 0.9


def test_a_level_seen_often_long_ago_is_rare_again() -> None:
    # A level visited for a while and then left for several memories counts as rare when it returns.
    detector = AnomalyDetector(FORGETFUL)
    for v in noisy(1000, level=50.0, seed=11) + noisy(1000, level=80.0, seed=12):
        detector.update(v)
    for v in noisy(4 * MEMORY, level=80.0, seed=13):
        detector.update(v)
    state = detector.state
    assert state.low is not None and state.low > 70  # the old level has left the range
    # Counts halve every `memory` values, so they level off near memory / ln 2 instead of piling up
    # to the 18000 values seen.
    assert sum(state.level_counts.values()) < 1.5 * MEMORY
    assert len(state.model_dump_json()) < 4000  # and the state stays small
    assert detector.update(50.0) > 0.9  # the old level, back after so long, is news again
    never = AnomalyDetector(FORGETFUL.model_copy(update={"memory_hours": 0}))
    for v in noisy(1000, level=50.0, seed=11) + noisy(1000, level=80.0, seed=12):
        never.update(v)
    for v in noisy(4 * MEMORY, level=80.0, seed=13):
        never.update(v)
    assert never.update(50.0) < 0.1  # round 1 still counted its thousand visits


def test_forgetting_state_round_trips_mid_quarter() -> None:
    series = noisy(3 * MEMORY // 2, seed=14)
    series[-10] = 90.0
    uninterrupted = scores(series, FORGETFUL)
    first = AnomalyDetector(FORGETFUL)
    head = [first.update(v) for v in series[: MEMORY + 17]]  # inside a quarter
    resumed = AnomalyDetector(FORGETFUL, AnomalyState.model_validate_json(first.state.model_dump_json()))
    assert head + [resumed.update(v) for v in series[MEMORY + 17 :]] == uninterrupted


def test_counts_follow_a_range_that_grows_step_by_step() -> None:
    # 3000 values in [49, 51], then new highs in small steps up to 52: the counts must stay where the
    # values were (the lowest two thirds of the levels), not keep their old level numbers.
    rng = random.Random(15)
    detector = AnomalyDetector(FORGETFUL)
    for _ in range(3000):
        detector.update(rng.uniform(49, 51))
    for i in range(1, 101):
        detector.update(51 + i / 100)
    state = detector.state
    assert state.low is not None and state.high is not None
    boundary = (51 - state.low) / (state.high - state.low) * FORGETFUL.levels  # the old high's level
    above = sum(n for k, n in state.level_counts.items() if k > boundary + 1)
    assert above < 0.05 * sum(state.level_counts.values())


def test_after_the_range_shrinks_its_high_is_still_a_common_level() -> None:
    # Latency of 1, 2 or 3 ms with one 40 ms burst, forgotten later: the range shrinks back to [1, 3],
    # and 3 ms, a third of all values, must not then count as never seen.
    rng = random.Random(16)
    detector = AnomalyDetector(FORGETFUL)
    for i in range(3 * MEMORY):
        detector.update(40.0 if i == 100 else float(rng.choice([1, 2, 3])))
    state = detector.state
    assert (state.low, state.high) == (1.0, 3.0)
    top = state.level_counts.get(FORGETFUL.levels - 1, 0.0)
    assert top > 0.2 * sum(state.level_counts.values())
