"""The sequential A/B test: decisions on clear cases, design validation, coverage and, above all, that
peeking after every batch does not inflate the rate of wrong "better" decisions (A/A simulations)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from autarky.models.sequential import (
    ArmSummary,
    SequentialDesign,
    evaluate,
    fixed_horizon_samples,
    half_width,
    log_effect,
    log_ratio,
    log_ratio_variances,
    relative_effect,
)

ALPHA = 0.05
RUNS = 300
BATCH = 50  # per arm per peek
BATCHES = 40
SLACK = 2 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)  # two Monte-Carlo standard errors at α


def binary(n: int, p: float) -> ArmSummary:
    return ArmSummary(n=n, mean=p, variance=p * (1 - p))


# ------------------------------------------------------------------------------ clear cases
def test_a_clear_improvement_is_better() -> None:
    result = evaluate(binary(5000, 0.30), binary(5000, 0.36), SequentialDesign())
    assert result.decision == "better"
    assert result.relative_effect == pytest.approx(0.20)
    assert 0 < result.lower < 0.20 < result.upper
    assert result.samples == 10_000


def test_a_clear_regression_is_worse() -> None:
    result = evaluate(binary(3000, 0.30), binary(3000, 0.24), SequentialDesign())
    assert result.decision == "worse"
    assert result.relative_effect == pytest.approx(-0.20)
    assert result.upper < 0


def test_no_difference_with_much_data_is_not_better() -> None:
    result = evaluate(binary(20_000, 0.30), binary(20_000, 0.30), SequentialDesign())
    assert result.decision == "not_better"
    assert result.lower < 0 < result.upper < 0.10


def test_a_significant_gain_below_the_minimum_is_promoted() -> None:
    # 7 % better, precisely enough to exclude 0: "better" is a significant improvement, the same rule as
    # the group-sequential design and the fixed horizon (waiting for "estimate >= minimum" kept tests
    # running near the minimum for long, issue 27 item 8).
    result = evaluate(binary(20_000, 0.30), binary(20_000, 0.321), SequentialDesign())
    assert result.lower > 0 and result.relative_effect < 0.10 <= result.upper
    assert result.decision == "better"


def test_futility_rules_out_the_minimum_at_level_beta() -> None:
    # A/A at 3,000 per arm: the α-level upper bound (+12.7 %) still includes the 10 % minimum, but the
    # level-β bound (power 0.8) excludes it: "not better", as a fixed test with this power would say.
    result = evaluate(binary(3000, 0.30), binary(3000, 0.30), SequentialDesign())
    assert result.upper > 0.10
    assert result.decision == "not_better"
    assert (
        evaluate(binary(3000, 0.30), binary(3000, 0.30), SequentialDesign(power=0.95)).decision == "continue"
    )


def test_log_ratio_and_its_variance() -> None:
    control, treatment = ArmSummary(400, 2.0, 1.0), ArmSummary(100, 2.5, 9.0)
    theta, variance = log_ratio(control, treatment, "higher")  # type: ignore[misc]
    assert theta == pytest.approx(math.log(1.25))
    assert variance == pytest.approx(9.0 / (100 * 2.5**2) + 1.0 / (400 * 2.0**2))
    assert log_ratio(control, treatment, "lower")[0] == pytest.approx(-math.log(1.25))  # type: ignore[index]
    for bad in (ArmSummary(1, 2.0, 1.0), ArmSummary(100, 0.0, 0.0), ArmSummary(100, -1.0, 1.0)):
        assert log_ratio(control, bad, "higher") is None and log_ratio(bad, control, "higher") is None
    assert log_ratio(ArmSummary(100, 1e-300, 1.0), control, "higher") is None  # the variance overflows


def test_the_variance_is_floored_at_the_pooled_one() -> None:
    # A small challenger arm without the control's spread (a skewed sample lacking its rare large values):
    # the delta method alone would trust its small variance; the floor is the pooled data's (issue 27
    # item 7: A/A false promotions of 3-5 % at a 10 % share without it).
    control, treatment = ArmSummary(9000, 100.0, 100.0**2), ArmSummary(1000, 90.0, 30.0**2)
    _, variance = log_ratio(control, treatment, "lower")  # type: ignore[misc]
    delta = 30.0**2 / (1000 * 90.0**2) + 100.0**2 / (9000 * 100.0**2)
    mean = (9000 * 100.0 + 1000 * 90.0) / 10_000
    pooled = (9000 * 100.0**2 + 1000 * 30.0**2 + 9000 * 1000 / 10_000 * 10.0**2) / 10_000
    assert variance == pytest.approx(pooled / mean**2 * (1 / 9000 + 1 / 1000))
    assert variance > delta
    # The delta method's variance alone is kept beside it (the group-sequential design's look clock).
    assert log_ratio_variances(control, treatment, "lower") == pytest.approx(
        (math.log(100.0 / 90.0), variance, delta)
    )


def test_relative_effects_are_on_the_relative_scale_both_ways() -> None:
    for direction in ("higher", "lower"):
        for r in (-0.5, -0.1, 0.0, 0.1, 0.5):
            assert relative_effect(log_effect(r, direction), direction) == pytest.approx(r)  # type: ignore[arg-type]
    # Lower is better: 800 ms against 1000 ms is 20 % better, whatever the log scale says.
    result = evaluate(
        ArmSummary(4000, 1000.0, 1e4), ArmSummary(4000, 800.0, 1e4), SequentialDesign(direction="lower")
    )
    assert result.relative_effect == pytest.approx(0.20)
    assert 0 < result.lower < 0.20 < result.upper < 1


def test_little_data_continues() -> None:
    result = evaluate(binary(400, 0.30), binary(400, 0.33), SequentialDesign())
    assert result.decision == "continue"
    assert result.lower < 0 < result.upper


def test_no_decision_before_the_minimum_samples_per_arm() -> None:
    design = SequentialDesign(min_samples=100)
    control, challenger = ArmSummary(99, 10.0, 1.0), ArmSummary(5000, 12.0, 1.0)
    assert evaluate(control, challenger, design).decision == "continue"
    assert evaluate(ArmSummary(100, 10.0, 1.0), challenger, design).decision == "better"


def test_lower_is_better_makes_a_reduction_positive() -> None:
    design = SequentialDesign(direction="lower")
    control = ArmSummary(n=2000, mean=1000.0, variance=400.0**2)
    faster = ArmSummary(n=2000, mean=800.0, variance=320.0**2)
    result = evaluate(control, faster, design)
    assert result.relative_effect == pytest.approx(0.20)
    assert result.decision == "better"
    assert evaluate(faster, control, design).decision == "worse"  # 25 % slower
    # The same data with higher-is-better reads the other way round.
    assert evaluate(control, faster, SequentialDesign(direction="higher")).decision == "worse"


def test_text() -> None:
    result = evaluate(binary(920, 0.30), binary(920, 0.39), SequentialDesign())
    assert result.text() == (
        f"+30.0 % [{100 * result.lower:+.1f} %, {100 * result.upper:+.1f} %] after 1,840 samples: better"
    )
    nothing = evaluate(ArmSummary(1, 0.3, 0.0), ArmSummary(1, 0.3, 0.0), SequentialDesign())
    assert nothing.text() == "n/a after 2 samples: continue"


def test_zero_control_mean_and_zero_variance_do_not_divide_by_zero() -> None:
    design = SequentialDesign()
    zero = evaluate(binary(500, 0.0), binary(500, 0.1), design)
    assert zero.decision == "continue" and math.isnan(zero.relative_effect) and "mean is 0" in zero.reason
    assert (zero.lower, zero.upper) == (-math.inf, math.inf)
    # Constant metrics: no noise, the bounds collapse on the estimate.
    same = evaluate(ArmSummary(500, 2.0, 0.0), ArmSummary(500, 2.0, 0.0), design)
    assert (same.relative_effect, same.lower, same.upper, same.decision) == (0.0, 0.0, 0.0, "not_better")
    apart = evaluate(ArmSummary(500, 2.0, 0.0), ArmSummary(500, 3.0, 0.0), design)
    assert apart.decision == "better"
    # All successes in both arms: a 10 % relative gain is impossible anyway.
    assert evaluate(binary(500, 1.0), binary(500, 1.0), design).decision == "not_better"
    assert half_width(0.0, design) == 0.0


def test_from_successes() -> None:
    assert ArmSummary.from_successes(200, 50) == ArmSummary(200, 0.25, 0.1875)
    assert ArmSummary.from_successes(0, 0) == ArmSummary(0, 0.0, 0.0)
    with pytest.raises(ValueError, match="successes"):
        ArmSummary.from_successes(10, 11)


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must be within"),
        ({"alpha": 0.5}, "alpha must be within"),
        ({"alpha": -0.1}, "alpha must be within"),
        ({"alpha": 1.2}, "alpha must be within"),
        ({"alpha": math.nan}, "alpha must be within"),
        ({"min_relative_improvement": 0.0}, "min_relative_improvement must be"),
        ({"min_relative_improvement": -0.1}, "min_relative_improvement must be"),
        ({"min_relative_improvement": math.inf}, "min_relative_improvement must be"),
        ({"min_relative_improvement": math.nan}, "min_relative_improvement must be"),
        ({"min_relative_improvement": 1.0, "direction": "lower"}, "must be < 1 when lower is better"),
        ({"direction": "up"}, "direction must be"),
        ({"power": 0.3}, "power must be within"),
        ({"power": 1.0}, "power must be within"),
        ({"min_samples": 1}, "min_samples must be"),
        ({"min_samples": 10.5}, "min_samples must be"),
    ],
)
def test_invalid_designs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SequentialDesign(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1, "mean": 0.5, "variance": 0.25}, "n must be"),
        ({"n": 2.5, "mean": 0.5, "variance": 0.25}, "n must be"),
        ({"n": 10, "mean": math.nan, "variance": 0.25}, "mean must be finite"),
        ({"n": 10, "mean": 0.5, "variance": -1.0}, "variance must be"),
        ({"n": 10, "mean": 0.5, "variance": math.inf}, "variance must be"),
    ],
)
def test_invalid_summaries_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArmSummary(**kwargs)


def test_fixed_horizon_samples() -> None:
    design = SequentialDesign()
    # On the log scale: (1.96 + 0.8416)² · 2 · (0.21 / 0.3²) / log(1.1)² ≈ 4033 per arm (one-sided α/2).
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    assert fixed_horizon_samples(0.30, 0.21, design) == math.ceil(z**2 * 2 * 0.21 / 0.09 / math.log(1.1) ** 2)
    assert fixed_horizon_samples(0.30, 0.21, design) == 4033
    half = SequentialDesign(min_relative_improvement=0.05)
    assert fixed_horizon_samples(0.30, 0.21, half) == pytest.approx(
        4033 * (math.log(1.1) / math.log(1.05)) ** 2, rel=1e-3
    )
    assert fixed_horizon_samples(0.30, 0.21, SequentialDesign(power=0.9)) > 4033
    assert fixed_horizon_samples(5.0, 0.0, design) == 2
    with pytest.raises(ValueError, match="baseline_mean"):
        fixed_horizon_samples(0.0, 0.21, design)
    with pytest.raises(ValueError, match="baseline_mean"):
        fixed_horizon_samples(-1.0, 0.21, design)
    with pytest.raises(ValueError, match="baseline_variance"):
        fixed_horizon_samples(0.3, -1.0, design)


def test_the_mixture_is_tuned_near_the_minimum_improvement() -> None:
    design = SequentialDesign()
    # τ² = x · (δ / z_sum)², δ = log 1.1, x = 2 log(1/α) + log(1 + x) ≈ 8.21 at α = 0.05: τ ≈ the minimum.
    x = design.mixture_variance / (design.min_log_effect / design.z_sum) ** 2
    assert x == pytest.approx(2 * math.log(20) + math.log1p(x))
    assert math.sqrt(design.mixture_variance) == pytest.approx(0.10, rel=0.05)


@settings(max_examples=200, deadline=None)
@given(
    n_c=st.integers(0, 10**6),
    n_t=st.integers(0, 10**6),
    m_c=st.floats(-1e6, 1e6),
    m_t=st.floats(-1e6, 1e6),
    v_c=st.floats(0, 1e9),
    v_t=st.floats(0, 1e9),
    direction=st.sampled_from(["higher", "lower"]),
)
@example(n_c=2, n_t=53, m_c=422956.0, m_t=0.0, v_c=0.0, v_t=2.225073858507203e-309, direction="higher")
@example(n_c=2, n_t=2, m_c=1.0, m_t=0.125, v_c=0.0, v_t=1.0, direction="higher")  # a bound beyond exp's range
def test_any_summary_gives_a_consistent_result(n_c, n_t, m_c, m_t, v_c, v_t, direction) -> None:
    design = SequentialDesign(direction=direction)
    r = evaluate(ArmSummary(n_c, m_c, v_c), ArmSummary(n_t, m_t, v_t), design)
    assert r.samples == n_c + n_t
    if math.isnan(r.relative_effect):
        assert r.decision == "continue"
        return
    assert r.lower <= r.relative_effect <= r.upper
    if r.decision == "better":
        assert r.lower > 0
    elif r.decision == "worse":
        assert r.upper < 0
    elif r.decision == "not_better":
        theta, variance = log_ratio(ArmSummary(n_c, m_c, v_c), ArmSummary(n_t, m_t, v_t), direction)  # type: ignore[misc]
        assert theta + half_width(variance, design, 2 * (1 - design.power)) < design.min_log_effect
    if min(n_c, n_t) < design.min_samples:
        assert r.decision == "continue"


# ------------------------------------------------------------------------------ simulations
def binary_paths(p_c: float, p_t: float, seed: int) -> tuple[np.ndarray, ...]:
    """Means and variances per run (rows) after each batch (columns), for both arms."""
    rng = np.random.default_rng(seed)
    n = np.arange(1, BATCHES + 1) * BATCH
    m_c = np.cumsum(rng.binomial(BATCH, p_c, (RUNS, BATCHES)), axis=1) / n
    m_t = np.cumsum(rng.binomial(BATCH, p_t, (RUNS, BATCHES)), axis=1) / n
    return m_c, m_c * (1 - m_c), m_t, m_t * (1 - m_t)


def lognormal_paths(log_sd: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    at = np.arange(1, BATCHES + 1) * BATCH - 1
    n = at + 1.0
    out = []
    for _ in range(2):
        x = rng.lognormal(math.log(500), log_sd, (RUNS, BATCHES * BATCH))
        s1, s2 = np.cumsum(x, axis=1)[:, at], np.cumsum(x * x, axis=1)[:, at]
        mean = s1 / n
        out += [mean, np.maximum(s2 - s1 * mean, 0) / (n - 1)]
    return tuple(out)


def first_decisions(paths: tuple[np.ndarray, ...], design: SequentialDesign) -> list[str]:
    """Each run's decision at the first peek that is not "continue" (peeking after every batch)."""
    m_c, v_c, m_t, v_t = paths
    decisions = []
    for i in range(RUNS):
        decision = "continue"
        for k in range(BATCHES):
            n = (k + 1) * BATCH
            r = evaluate(
                ArmSummary(n, float(m_c[i, k]), float(v_c[i, k])),
                ArmSummary(n, float(m_t[i, k]), float(v_t[i, k])),
                design,
            )
            if r.decision != "continue":
                decision = r.decision
                break
        decisions.append(decision)
    return decisions


def peeked_fixed_test_promotes(paths: tuple[np.ndarray, ...], sign: float) -> float:
    """The classic fixed-n z-test read after every batch: the share of runs ever 'significantly better'."""
    m_c, v_c, m_t, v_t = paths
    n = np.arange(1, BATCHES + 1) * BATCH
    se = np.sqrt((v_c + v_t) / n)
    z = NormalDist().inv_cdf(1 - ALPHA / 2)
    return float((sign * (m_t - m_c) > z * se).any(axis=1).mean())


@settings(max_examples=4, deadline=None, derandomize=True)
@given(p=st.floats(0.1, 0.9))
def test_peeking_at_an_a_a_binary_test_keeps_false_promotions_within_alpha(p: float) -> None:
    paths = binary_paths(p, p, seed=11)
    decisions = first_decisions(paths, SequentialDesign(alpha=ALPHA))
    assert decisions.count("better") / RUNS <= ALPHA + SLACK
    assert (decisions.count("better") + decisions.count("worse")) / RUNS <= ALPHA + SLACK
    # The contrast: the same data, read the classic way after every batch, promotes far more often.
    assert peeked_fixed_test_promotes(paths, 1.0) > ALPHA + SLACK


@settings(max_examples=3, deadline=None, derandomize=True)
@given(log_sd=st.floats(0.3, 1.0))
def test_peeking_at_an_a_a_latency_test_keeps_false_promotions_within_alpha(log_sd: float) -> None:
    paths = lognormal_paths(log_sd, seed=12)
    decisions = first_decisions(paths, SequentialDesign(alpha=ALPHA, direction="lower"))
    assert decisions.count("better") / RUNS <= ALPHA + SLACK
    assert peeked_fixed_test_promotes(paths, -1.0) > ALPHA + SLACK


@pytest.mark.parametrize("true_effect", [0.0, 0.10, 0.25])
def test_the_confidence_sequence_covers_the_true_effect_at_every_peek(true_effect: float) -> None:
    m_c, v_c, m_t, v_t = binary_paths(0.3, 0.3 * (1 + true_effect), seed=13)
    design = SequentialDesign(alpha=ALPHA)
    missed = 0
    for i in range(RUNS):
        for k in range(BATCHES):
            n = (k + 1) * BATCH
            r = evaluate(
                ArmSummary(n, float(m_c[i, k]), float(v_c[i, k])),
                ArmSummary(n, float(m_t[i, k]), float(v_t[i, k])),
                design,
            )
            if not r.lower <= true_effect <= r.upper:
                missed += 1  # time-uniform: a run that ever misses counts once
                break
    assert missed / RUNS <= ALPHA + SLACK


def test_the_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.abtest import main

    argv = [
        "--runs",
        "200",
        "--effect",
        "0",
        "0.2",
        "--metric",
        "lognormal",
        "--share",
        "0.1",
        "--log-sd",
        "1.2",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lognormal, log-sd 1.2, challenger share 0.1" in out and "goals:" in out
    assert "A/A false promotion (group)" in out and "effect 20%: group mean samples" in out
