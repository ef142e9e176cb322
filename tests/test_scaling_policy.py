"""The round-2 scaling policy (pure): proportional need, warm-up accounting, expected rise, stabilisation,
blast radius both ways, scale to zero, and its memory as its only state."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from autarky.scaling.policy import approval_needed, blast_radius, recommend
from autarky.scaling.policy_types import Capacity, LoadSample, ScalingMemory, ScalingPolicy

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
POLICY = ScalingPolicy(max_capacity=100)


def at(minute: float) -> datetime:
    return T0 + minute * MINUTE


def load(demand: float, minute: float = 0, **extra: float) -> LoadSample:
    return LoadSample(at=at(minute), demand=demand, **extra)


def run(
    policy: ScalingPolicy, demands: list[float], start: int, memory: ScalingMemory | None = None
) -> list[int]:
    """Replay demands one per minute, every change in service at once; the capacity after each minute."""
    memory = memory or ScalingMemory()
    capacity, seen = start, []
    for minute, demand in enumerate(demands):
        capacity = recommend(
            policy, Capacity(desired=capacity, in_service=capacity), load(demand, minute), memory
        ).desired
        seen.append(capacity)
    return seen


def test_capacity_grows_in_proportion_to_demand_in_one_step() -> None:
    recommendation = recommend(POLICY, Capacity(desired=4, in_service=4), load(6.5), ScalingMemory())
    assert recommendation.desired == 7 and "needs 7" in recommendation.reason


def test_utilisation_counts_over_the_capacity_in_service() -> None:
    sample = LoadSample(at=T0, utilisation=1.5)  # 4 in service, 150 % busy: 6 units of demand
    assert recommend(POLICY, Capacity(desired=4, in_service=4), sample, ScalingMemory()).desired == 6


def test_starting_capacity_is_counted_instead_of_a_cooldown() -> None:
    memory = ScalingMemory()
    first = recommend(POLICY, Capacity(desired=4, in_service=4), load(6.5, 0), memory)
    assert first.desired == 7
    # A minute later the 3 new units still start: the same demand asks for nothing more,
    held = recommend(POLICY, Capacity(desired=7, in_service=4), load(6.5, 1), memory)
    assert held.desired == 7 and "counting 3 starting" in held.reason
    # and more demand asks for more at once (no cooldown since the last change).
    more = recommend(POLICY, Capacity(desired=7, in_service=4), load(7.5, 2), memory)
    assert more.desired == 8


def test_automatic_growth_stays_within_the_blast_radius_of_what_serves() -> None:
    policy = ScalingPolicy(max_capacity=100, blast_radius=1.0, blast_radius_units=4)
    grow = recommend(policy, Capacity(desired=2, in_service=2), load(50), ScalingMemory())
    assert grow.desired == 6 and "blast radius" in grow.reason  # +4 units (100 % of 2 is only 2)
    assert approval_needed(policy, 2, grow.desired) is None
    big = recommend(policy, Capacity(desired=10, in_service=10), load(50), ScalingMemory())
    assert big.desired == 20  # doubled
    held = recommend(policy, Capacity(desired=20, in_service=10), load(50), ScalingMemory())
    assert held.desired == 20 and "held at 20" in held.reason  # the rest waits until those serve


def test_a_large_scale_down_needs_a_person_like_a_large_scale_up() -> None:
    policy = ScalingPolicy(max_capacity=100, blast_radius=1.0, blast_radius_units=1)
    reason = approval_needed(policy, 10, 0)
    assert reason is not None and "shrinks capacity by 10" in reason
    assert approval_needed(policy, 10, 5) is None  # halving mirrors doubling
    assert approval_needed(policy, 10, 4) is not None
    assert approval_needed(policy, 1, 0) is None  # one unit is routine
    assert approval_needed(policy, 4, 9) is not None and approval_needed(policy, 4, 8) is None


def test_the_policy_shrinks_only_after_a_whole_window_and_within_the_blast_radius() -> None:
    policy = ScalingPolicy(max_capacity=100, stabilisation_window=timedelta(minutes=6))
    memory = ScalingMemory()
    seen = run(policy, [20.0] * 10 + [2.0] * 20, 20, memory)
    first_drop = next(minute for minute, c in enumerate(seen) if c < 20)
    assert first_drop >= 10 + 5  # the low demand was seen for the whole window first
    assert seen[first_drop] == 10  # at most half of 20 at once (blast radius 100 % / 4 units: 20 → 10)
    for before, after in itertools.pairwise(seen):
        assert after >= before - blast_radius(policy, before, shrinking=True)
    assert seen[-1] == 3  # ceil(2 / 0.85)


def test_a_dip_shorter_than_the_window_does_not_shrink_capacity() -> None:
    policy = ScalingPolicy(max_capacity=100, stabilisation_window=timedelta(minutes=6))
    seen = run(policy, [8.0] * 10 + [1.0] * 5 + [8.0] * 10, 8)
    assert set(seen) == {8}


def test_noise_around_a_unit_boundary_does_not_flap() -> None:
    rng = random.Random(7)
    demands = [5.0 + rng.uniform(-0.4, 0.4) for _ in range(600)]
    seen = run(POLICY, demands, 5)
    changes = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    assert changes <= 10  # ten hours of noise: at most about one change an hour
    assert min(seen[60:]) >= 6  # it holds the capacity that covers the noise plus its rises


def test_a_steady_rise_is_met_ahead_by_the_expected_rise_over_a_warm_up() -> None:
    policy = ScalingPolicy(max_capacity=100, warmup=timedelta(minutes=3))
    memory = ScalingMemory()
    ramp = [10 + 0.5 * minute for minute in range(90)]  # +1.5 units per warm-up
    seen = run(policy, ramp, 10, memory)
    # After the history has seen rises, capacity leads the demand by about one warm-up's rise.
    assert all(capacity >= demand + 1 for capacity, demand in zip(seen[10:], ramp[10:], strict=True))
    flat = run(ScalingPolicy(max_capacity=100, warmup=timedelta(0)), ramp, 10)
    assert sum(seen) > sum(flat)  # without a warm-up nothing is expected to rise


def test_a_gap_in_the_readings_forgets_the_rises_and_waits_a_window() -> None:
    memory = ScalingMemory()
    run(POLICY, [10 + minute for minute in range(30)], 10, memory)
    assert memory.rises
    later = recommend(POLICY, Capacity(desired=40, in_service=40), load(5.0, 300), memory)
    assert later.desired == 40 and "whole stabilisation window" in later.reason
    assert not memory.rises


def test_a_pool_goes_to_zero_after_the_idle_window_and_comes_back_on_the_first_backlog() -> None:
    policy = ScalingPolicy(min_capacity=0, max_capacity=4, idle_window=timedelta(minutes=5))
    memory = ScalingMemory()
    seen = run(policy, [0.0] * 12, 2, memory)
    assert seen[:5] == [2] * 5  # idle, but not for the idle window yet
    assert seen[5:] == [0] * 7  # then zero at once: the idle window is the stabilisation for zero
    patient = policy.model_copy(update={"idle_window": timedelta(minutes=10)})
    assert run(patient, [0.0] * 12, 2) == [2] * 6 + [1] * 4 + [0] * 2  # one member until idle for 10 min
    back = recommend(policy, Capacity(desired=0, in_service=0), load(0.0, 13, backlog=3), memory)
    assert back.desired == 1
    busy = recommend(policy, Capacity(desired=0, in_service=0), load(2.5, 14, backlog=10), memory)
    assert busy.desired == 3


def test_a_backlog_that_waits_too_long_adds_a_unit_when_everything_serves() -> None:
    policy = ScalingPolicy(max_capacity=10, backlog_age_limit=timedelta(seconds=30))
    old = load(2.0, backlog=5, backlog_age_seconds=120)
    grow = recommend(policy, Capacity(desired=3, in_service=3), old, ScalingMemory())
    assert grow.desired == 4 and "backlog waited 120 s" in grow.reason
    starting = recommend(policy, Capacity(desired=4, in_service=3), old, ScalingMemory())
    assert starting.desired == 4  # a unit is already on its way


def test_bounds_hold_and_unknown_demand_changes_nothing() -> None:
    policy = ScalingPolicy(min_capacity=2, max_capacity=6)
    assert recommend(policy, Capacity(desired=1, in_service=1), load(0.1), ScalingMemory()).desired == 2
    assert recommend(policy, Capacity(desired=9, in_service=9), load(0.1), ScalingMemory()).desired == 6
    assert recommend(policy, Capacity(desired=4, in_service=4), load(50), ScalingMemory()).desired == 6
    unknown = recommend(policy, Capacity(desired=4, in_service=0), LoadSample(at=T0), ScalingMemory())
    assert unknown.desired == 4 and "demand unknown" in unknown.reason


def test_the_memory_is_all_the_state_and_survives_serialisation() -> None:
    rng = random.Random(3)
    memory, capacity = ScalingMemory(), 5
    for minute in range(200):
        sample = load(max(0.0, 5 + 3 * rng.gauss(0, 1)), minute)
        copy = ScalingMemory.model_validate_json(memory.model_dump_json())
        state = Capacity(desired=capacity, in_service=capacity)
        recommendation = recommend(POLICY, state, sample, memory)
        assert recommend(POLICY, state, sample, copy) == recommendation
        capacity = recommendation.desired
    assert len(memory.rises) <= 61 and len(memory.recommendations) <= 7  # bounded by the windows


def test_with_no_routine_units_one_unit_from_or_to_nothing_is_still_routine() -> None:
    strict = ScalingPolicy(min_capacity=0, max_capacity=4, blast_radius_units=0)
    back = recommend(strict, Capacity(desired=0, in_service=0), load(2.0, backlog=20), ScalingMemory())
    assert back.desired == 1 and approval_needed(strict, 0, 1) is None
    assert approval_needed(strict, 1, 0) is None and approval_needed(strict, 0, 2) is not None


def test_an_idle_spell_before_a_gap_does_not_count_after_it() -> None:
    policy = ScalingPolicy(min_capacity=0, max_capacity=4, idle_window=timedelta(minutes=5))
    memory = ScalingMemory()
    run(policy, [0.0] * 3, 2, memory)  # idle since minute 0, then the readings stop for two hours
    after = recommend(policy, Capacity(desired=2, in_service=2), load(0.0, 120), memory)
    assert after.desired == 2  # the idle window starts again: two hours unseen are not two hours idle
