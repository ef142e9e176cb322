"""The round-1 scaling policy (kept for replay): steps, bounds, backlog, cooldown, stabilisation, approval."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autarky.scaling.policy_round1 import approval_needed, clamp, cooldown_remaining, recommend, record_event
from autarky.scaling.policy_types import LoadSample, ScalingMemory, ScalingPolicy

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
# Round 1's defaults (round 2 changed the cooldown, the window and the blast radius).
DEFAULT = ScalingPolicy(
    cooldown=timedelta(minutes=5),
    stabilisation_window=timedelta(minutes=15),
    blast_radius=0.5,
    blast_radius_units=1,
)
ISSUE = DEFAULT.model_copy(
    update={"scale_up_utilisation": 0.8, "scale_down_utilisation": 0.3, "stabilisation_window": timedelta(0)}
)
POLICIES = [pytest.param(DEFAULT, id="defaults"), pytest.param(ISSUE, id="issue-80-30")]


def sample(utilisation: float | None, at: datetime = T0, **backlog: float) -> LoadSample:
    return LoadSample(at=at, utilisation=utilisation, **backlog)


def seasoned(policy: ScalingPolicy) -> ScalingMemory:
    """A memory that has watched the resource for a whole stabilisation window (nothing recommended)."""
    return ScalingMemory(observed_since=T0 - policy.stabilisation_window)


def desired(policy: ScalingPolicy, current: int, utilisation: float | None, **backlog: float) -> int:
    return recommend(policy, current, sample(utilisation, **backlog), seasoned(policy)).desired


def test_a_fresh_start_or_a_gap_watches_a_whole_window_before_scaling_down() -> None:
    memory = ScalingMemory()
    first = recommend(DEFAULT, 4, sample(0.1, T0), memory)
    assert first.desired == 4 and "whole stabilisation window" in first.reason
    assert recommend(DEFAULT, 4, sample(0.95, T0), ScalingMemory()).desired == 5  # growing never waits
    window = DEFAULT.stabilisation_window
    assert recommend(DEFAULT, 4, sample(0.1, T0 + window), memory).desired == 3  # seen all along
    after_gap = T0 + 3 * window  # e.g. the autopilot was down: what happened meanwhile is unknown
    assert recommend(DEFAULT, 4, sample(0.1, after_gap), memory).desired == 4


# ------------------------------------------------------------------------------------------ steps
@pytest.mark.parametrize("policy", POLICIES)
def test_just_above_the_threshold_adds_one_unit(policy: ScalingPolicy) -> None:
    assert desired(policy, 4, policy.scale_up_utilisation + 0.02) == 5


@pytest.mark.parametrize("policy", POLICIES)
def test_far_above_the_threshold_adds_at_most_max_step_up(policy: ScalingPolicy) -> None:
    assert policy.max_step_up == 2
    assert desired(policy, 4, 1.5) == 6  # 1.5 would need 3 more units at the threshold; 2 per event
    assert desired(policy, 4, 10.0) == 6


def test_the_step_up_is_what_brings_the_utilisation_back_under_the_threshold() -> None:
    policy = ScalingPolicy(max_step_up=10)
    assert desired(policy, 4, 1.5) == math.ceil(4 * 1.5 / policy.scale_up_utilisation)  # 7


@pytest.mark.parametrize("policy", POLICIES)
def test_never_above_max_capacity(policy: ScalingPolicy) -> None:
    bounded = policy.model_copy(update={"max_capacity": 5})
    assert desired(bounded, 4, 3.0) == 5
    recommendation = recommend(bounded, 5, sample(3.0), ScalingMemory())
    assert recommendation.desired == 5
    assert "maximum" in recommendation.reason


@pytest.mark.parametrize("policy", POLICIES)
def test_never_below_min_capacity(policy: ScalingPolicy) -> None:
    bounded = policy.model_copy(update={"min_capacity": 2})
    assert desired(bounded, 2, 0.0) == 2
    assert desired(bounded, 3, 0.0) == 2


def test_outside_the_bounds_comes_back_at_once_even_in_cooldown() -> None:
    memory = ScalingMemory()
    record_event(memory, T0)
    policy = ScalingPolicy(min_capacity=2, max_capacity=6)
    assert recommend(policy, 9, sample(0.75, T0 + MINUTE), memory).desired == 6
    assert recommend(policy, 1, sample(0.75, T0 + MINUTE), memory).desired == 2


@pytest.mark.parametrize("policy", POLICIES)
def test_below_the_scale_down_threshold_removes_one_unit(policy: ScalingPolicy) -> None:
    assert policy.step_down == 1
    assert desired(policy, 6, policy.scale_down_utilisation - 0.05) == 5
    assert desired(policy, 6, 0.0) == 5  # one per event, however idle


@pytest.mark.parametrize("policy", POLICIES)
def test_within_the_band_nothing_changes(policy: ScalingPolicy) -> None:
    middle = (policy.scale_up_utilisation + policy.scale_down_utilisation) / 2
    assert desired(policy, 4, middle) == 4
    assert desired(policy, 4, None) == 4  # nothing known, nothing done


def test_a_shrink_that_would_call_for_growing_again_is_not_made() -> None:
    # 2 units at 55 %: one unit would run at 110 %, above the 90 % threshold.
    assert DEFAULT.scale_down_utilisation > 0.55
    assert desired(DEFAULT, 2, 0.55) == 2
    assert desired(DEFAULT, 2, 0.40) == 1  # 80 % on one unit is fine


# ------------------------------------------------------------------------------------------ backlog
@pytest.mark.parametrize("policy", POLICIES)
def test_a_backlog_older_than_the_limit_scales_up_even_at_low_cpu(policy: ScalingPolicy) -> None:
    old = policy.backlog_age_limit.total_seconds() + 1
    recommendation = recommend(policy, 3, sample(0.05, backlog=7, backlog_age_seconds=old), ScalingMemory())
    assert recommendation.desired == 4
    assert "backlog" in recommendation.reason
    assert desired(policy, 3, None, backlog=7, backlog_age_seconds=old) == 4  # CPU unknown


@pytest.mark.parametrize("policy", POLICIES)
def test_a_young_backlog_neither_scales_up_nor_lets_it_shrink(policy: ScalingPolicy) -> None:
    young = policy.backlog_age_limit.total_seconds() / 2
    assert desired(policy, 3, 0.05, backlog=7, backlog_age_seconds=young) == 3
    assert desired(policy, 3, 0.05, backlog=0, backlog_age_seconds=0) == 2


# ------------------------------------------------------------------------------------------ cooldown
@pytest.mark.parametrize("policy", POLICIES)
def test_cooldown_holds_then_lets_the_next_change_through(policy: ScalingPolicy) -> None:
    memory = ScalingMemory()
    record_event(memory, T0)
    high = policy.scale_up_utilisation + 0.05
    just_before = T0 + policy.cooldown - timedelta(seconds=1)
    held = recommend(policy, 4, sample(high, just_before), memory)
    assert held.desired == 4
    assert "cooldown" in held.reason
    assert cooldown_remaining(policy, memory.last_scaled_at, just_before) == timedelta(seconds=1)
    assert recommend(policy, 4, sample(high, T0 + policy.cooldown), memory).desired == 5
    assert cooldown_remaining(policy, memory.last_scaled_at, T0 + policy.cooldown) == timedelta(0)
    assert cooldown_remaining(policy, None, T0) == timedelta(0)


# ------------------------------------------------------------------------------------------ stabilisation
def test_scale_down_waits_for_a_whole_window_of_low_samples() -> None:
    policy = DEFAULT
    memory = ScalingMemory()
    assert recommend(policy, 4, sample(0.75, T0), memory).desired == 4  # within the band
    window = int(policy.stabilisation_window / MINUTE)
    for minute in range(1, window + 1):  # the in-band sample at T0 is still in the window
        recommendation = recommend(policy, 4, sample(0.3, T0 + minute * MINUTE), memory)
        assert recommendation.desired == 4, minute
    assert "stabilisation window" in recommendation.reason
    assert recommend(policy, 4, sample(0.3, T0 + (window + 1) * MINUTE), memory).desired == 3


def test_a_dip_does_not_shrink_below_what_the_window_asked_for() -> None:
    policy = ScalingPolicy(step_down=5)
    memory = ScalingMemory()
    window = int(policy.stabilisation_window / MINUTE)
    # Low for a whole window, at utilisations that ask for 3 units, then one deep dip asking for 1.
    for minute in range(window + 1):
        recommend(policy, 6, sample(0.45, T0 + minute * MINUTE), memory)  # ceil(6 * 0.45 / 0.9) = 3
    assert recommend(policy, 6, sample(0.01, T0 + (window + 1) * MINUTE), memory).desired == 3


@pytest.mark.parametrize(("policy", "high"), [(DEFAULT, 0.95), (ISSUE, 0.9)], ids=["defaults", "issue-80-30"])
def test_an_oscillating_signal_does_not_flap(policy: ScalingPolicy, high: float) -> None:
    """Utilisation alternating high / 10 % every minute for an hour, whatever the capacity."""
    flapping = policy.model_copy(update={"stabilisation_window": timedelta(minutes=5), "max_capacity": 100})
    memory = ScalingMemory()
    current, changes, directions = 4, 0, []
    for minute in range(60):
        at = T0 + minute * MINUTE
        recommendation = recommend(flapping, current, sample(high if minute % 2 == 0 else 0.1, at), memory)
        if recommendation.desired != current:
            record_event(memory, at)
            changes += 1
            directions.append(recommendation.desired > current)
            current = recommendation.desired
    # The cooldown allows at most one change per cooldown; the window (always holding a high sample)
    # allows no shrink at all, so the capacity only grows: no flapping.
    assert changes <= math.ceil(timedelta(hours=1) / flapping.cooldown)
    assert changes >= 1
    assert all(directions), directions


def test_within_the_band_an_oscillation_changes_nothing_with_the_defaults() -> None:
    memory = ScalingMemory()
    for minute in range(60):
        utilisation = 0.9 if minute % 2 == 0 else 0.1  # 90 % is not above the 90 % threshold
        assert recommend(DEFAULT, 4, sample(utilisation, T0 + minute * MINUTE), memory).desired == 4


# ------------------------------------------------------------------------------------------ approval
def test_growth_beyond_the_blast_radius_needs_approval() -> None:
    assert DEFAULT.blast_radius == 0.5
    assert approval_needed(DEFAULT, 4, 6) is None  # +50 % exactly
    reason = approval_needed(DEFAULT, 4, 7)  # +75 %
    assert reason is not None
    assert "blast radius" in reason
    assert approval_needed(DEFAULT, 0, 2) is not None  # from nothing, judged against 1 unit
    assert approval_needed(DEFAULT, 1, 2) is None  # +100 %, but one unit is routine (blast_radius_units)
    assert approval_needed(DEFAULT.model_copy(update={"blast_radius_units": 0}), 1, 2) is not None


def test_capacity_above_the_cost_ceiling_needs_approval() -> None:
    policy = ScalingPolicy(unit_cost_per_hour=1.5, cost_ceiling_per_hour=10.0, blast_radius=10.0)
    assert approval_needed(policy, 5, 6) is None  # 9.00/h
    reason = approval_needed(policy, 6, 7)  # 10.50/h
    assert reason is not None
    assert "ceiling" in reason


def test_shrinking_never_needs_approval() -> None:
    policy = ScalingPolicy(unit_cost_per_hour=1.0, cost_ceiling_per_hour=1.0)
    assert approval_needed(policy, 8, 1) is None
    assert approval_needed(policy, 8, 7) is None  # even while still above the ceiling
    assert approval_needed(policy, 3, 3) is None


# ------------------------------------------------------------------------------------------ properties
@st.composite
def policies(draw: st.DrawFn) -> ScalingPolicy:
    up = draw(st.floats(0.05, 1.0))
    low = draw(st.integers(0, 5))
    return ScalingPolicy(
        scale_up_utilisation=up,
        scale_down_utilisation=draw(st.floats(0.0, up, exclude_max=True)),
        max_step_up=draw(st.integers(1, 5)),
        step_down=draw(st.integers(1, 5)),
        min_capacity=low,
        max_capacity=draw(st.integers(max(low, 1), 30)),
        cooldown=timedelta(seconds=draw(st.integers(0, 900))),
        stabilisation_window=timedelta(seconds=draw(st.integers(0, 1800))),
        backlog_age_limit=timedelta(seconds=draw(st.integers(1, 120))),
    )


steps = st.lists(
    st.tuples(
        st.integers(0, 600),  # seconds since the previous sample
        st.integers(0, 40),  # the capacity the resource has now (may be outside the bounds)
        st.one_of(st.none(), st.floats(0.0, 20.0)),  # utilisation
        st.one_of(st.none(), st.integers(0, 50)),  # backlog
        st.one_of(st.none(), st.floats(0.0, 600.0)),  # its age
        st.booleans(),  # whether the recommendation was carried out
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(policy=policies(), run=steps)
def test_the_recommendation_stays_within_the_bounds_and_memory_round_trips(
    policy: ScalingPolicy, run: list[tuple[int, int, float | None, int | None, float | None, bool]]
) -> None:
    memory = ScalingMemory()
    at = T0
    for seconds, current, utilisation, backlog, age, carried_out in run:
        at += timedelta(seconds=seconds)
        load = LoadSample(at=at, utilisation=utilisation, backlog=backlog, backlog_age_seconds=age)
        copy = ScalingMemory.model_validate_json(memory.model_dump_json())
        assert copy == memory
        recommendation = recommend(policy, current, load, memory)
        assert policy.min_capacity <= recommendation.desired <= policy.max_capacity
        assert recommendation.desired == clamp(policy, recommendation.desired)
        assert recommendation.current == current
        assert recommend(policy, current, load, copy) == recommendation  # the memory is all the state
        if carried_out and recommendation.desired != current:
            record_event(memory, at)
    assert ScalingMemory.model_validate_json(memory.model_dump_json()) == memory
