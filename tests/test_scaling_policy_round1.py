"""Round 1's approval rule for a growth, which the ScalerWorkflow still asks by (round 1's sizing went in
release 29 with the local pool's round 1)."""

from __future__ import annotations

from datetime import timedelta

from autarky.scaling.policy_round1 import approval_needed
from autarky.scaling.policy_types import ScalingPolicy

# Round 1's defaults (round 2 changed the cooldown, the window and the blast radius).
DEFAULT = ScalingPolicy(
    cooldown=timedelta(minutes=5),
    stabilisation_window=timedelta(minutes=15),
    blast_radius=0.5,
    blast_radius_units=1,
)


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
