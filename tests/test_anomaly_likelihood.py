"""The anomaly-likelihood layer (issue 29, "scores that mean the same everywhere")."""

from __future__ import annotations

import math
import random

import pytest

from autarky.autopilot.detectors.likelihood import (
    AnomalyLikelihood,
    LikelihoodConfig,
    LikelihoodState,
    gaussian_upper_tail,
    samples_for,
)


def stationary_scores(n: int, seed: int, mean: float = 0.3, sd: float = 0.05) -> list[float]:
    rng = random.Random(seed)
    return [min(1.0, max(0.0, rng.gauss(mean, sd))) for _ in range(n)]


@pytest.mark.parametrize(("p", "mean", "sd"), [(0.01, 0.3, 0.05), (0.05, 0.3, 0.05), (0.01, 0.05, 0.01)])
def test_exceedance_rate_matches_the_nominal_tail_on_stationary_scores(
    p: float, mean: float, sd: float
) -> None:
    """Calibration: on stationary raw scores, likelihood >= 1 - p about a fraction p of the time, for a
    noisy metric and a calm one alike (the same threshold means the same)."""
    n = 60_000
    config = LikelihoodConfig(history_hours=24.0, warmup_hours=2.0, short_samples=5, min_std=1e-4)
    layer = AnomalyLikelihood(30.0, config)
    out = [layer.update(x) for x in stationary_scores(n, seed=7, mean=mean, sd=sd)]
    scored = out[layer.warmup + 2 * layer.history :]  # after the distribution has settled
    rate = sum(v >= 1 - p for v in scored) / len(scored)
    # Overlapping 5-sample averages make exceedances come in runs: the count's variance is up to ~5× the
    # binomial one. ±4 such standard deviations, plus a little for the estimated mean and variance.
    sd_rate = math.sqrt(p * (1 - p) * config.short_samples / len(scored))
    assert abs(rate - p) <= 4 * sd_rate + 0.1 * p, (rate, p)


def test_a_clear_spike_after_a_quiet_stretch_is_near_certain() -> None:
    layer = AnomalyLikelihood(300.0)
    out = [layer.update(x) for x in stationary_scores(2000, seed=3, mean=0.1, sd=0.02)]
    assert max(out[-500:]) < 0.9999  # quiet: never near certain
    spike = [layer.update(0.9) for _ in range(3)]
    assert spike[0] > 0.999
    assert spike[-1] > 0.999999


def test_suppressed_raw_scores_of_zero_do_not_make_every_small_score_certain() -> None:
    """A detector that outputs 0 for hours: the std floor keeps a 0.005 blip unremarkable."""
    layer = AnomalyLikelihood(30.0)
    for _ in range(3000):
        layer.update(0.0)
    assert layer.update(0.005) < 0.9
    assert layer.update(0.8) > 0.999


def test_state_round_trips_through_json_with_identical_outputs() -> None:
    scores = stationary_scores(3000, seed=11)
    scores[2500] = 0.95
    first = AnomalyLikelihood(60.0)
    for x in scores[:1500]:
        first.update(x)
    blob = first.state.model_dump_json()
    resumed = AnomalyLikelihood(60.0, state=LikelihoodState.model_validate_json(blob))
    assert [first.update(x) for x in scores[1500:]] == [resumed.update(x) for x in scores[1500:]]
    assert first.state == resumed.state


def test_warmup_in_time_means_the_same_at_30_s_and_5_min() -> None:
    config = LikelihoodConfig(warmup_hours=3.0)
    fast, slow = AnomalyLikelihood(30.0, config), AnomalyLikelihood(300.0, config)
    assert fast.warmup == 360 and slow.warmup == 36
    fast_out = [fast.update(x) for x in stationary_scores(1000, seed=1)]
    slow_out = [slow.update(x) for x in stationary_scores(100, seed=1)]
    # Zero until exactly three hours of samples, then a probability.
    first_fast = next(i for i, v in enumerate(fast_out) if v > 0)
    first_slow = next(i for i, v in enumerate(slow_out) if v > 0)
    assert first_fast * 30.0 == first_slow * 300.0 == 3 * 3600.0


def test_history_in_time_forgets_at_the_same_pace() -> None:
    """After the raw scores' level moves, the learnt mean follows in the same hours at 30 s and 5 min:
    one history (4 h) later it has covered 1 - 1/e of the step at both intervals."""
    config = LikelihoodConfig(history_hours=4.0)
    learnt = []
    for interval in (30.0, 300.0):
        layer = AnomalyLikelihood(interval, config)
        per_hour = int(3600 / interval)
        for x in stationary_scores(24 * per_hour, seed=5, mean=0.1, sd=0.02):
            layer.update(x)
        for x in stationary_scores(4 * per_hour, seed=6, mean=0.5, sd=0.02):
            layer.update(x)
        learnt.append(layer.state.mean)
    expected = 0.1 + 0.4 * (1 - math.exp(-1))
    assert learnt[0] == pytest.approx(expected, abs=0.01)
    assert learnt[1] == pytest.approx(expected, abs=0.02)


def test_state_and_work_stay_bounded() -> None:
    layer = AnomalyLikelihood(30.0, LikelihoodConfig(short_samples=8))
    sizes = []
    for i, x in enumerate(stationary_scores(50_000, seed=2)):
        layer.update(x)
        if i in (100, 49_999):
            sizes.append(layer.state_size_bytes())
    assert len(layer.state.recent) == 8
    assert sizes[1] <= sizes[0] + 40  # only the digits of the counters grow
    assert sizes[1] < 400


def test_non_finite_scores_are_skipped_not_learnt() -> None:
    layer = AnomalyLikelihood(30.0)
    for x in stationary_scores(500, seed=4):
        layer.update(x)
    before = layer.state
    assert layer.update(math.nan) == 0.0 and layer.update(math.inf) == 0.0
    after = layer.state
    assert after.skipped == 2 and after.model_copy(update={"skipped": 0}) == before


def test_interval_must_be_positive_and_named() -> None:
    with pytest.raises(ValueError, match="interval_seconds"):
        AnomalyLikelihood(0.0)


def test_tail_matches_scipy_and_samples_round_up() -> None:
    stats = pytest.importorskip("scipy.stats")
    for z in (-2.0, 0.0, 1.0, 3.0, 8.0, 20.0):
        assert gaussian_upper_tail(z) == pytest.approx(stats.norm.sf(z), rel=1e-9)
    assert samples_for(1.0, 7.0) == 515
    assert samples_for(1e-6, 300.0) == 1
