"""Round 1's approval rule for a growth (pure code): when a change needs a person.

The ScalerWorkflow still asks by it for a growth (a shrink beyond the blast radius asks by round 2's,
autarky.scaling.policy.approval_needed, since release 28): no patch changed it, and it differs from round
2's only from zero capacity. Round 1's sizing (CPU thresholds, a cooldown) went with the local pool's round
1 in release 29 (patch `pool-scaling-round-2` deprecated, docs/patches.md).
"""

from __future__ import annotations

from autarky.scaling.policy_types import ScalingPolicy

__all__ = ["approval_needed"]


def approval_needed(policy: ScalingPolicy, current: int, desired: int) -> str | None:
    """Why a growth from `current` to `desired` needs a person's approval, or None (a shrink: None)."""
    if desired <= current:
        return None
    growth = desired - current
    if growth > max(policy.blast_radius * max(current, 1), policy.blast_radius_units):
        return (
            f"{current} → {desired} grows capacity by {growth} units, more than the blast radius "
            f"(+{policy.blast_radius:.0%} of {current})"
        )
    if policy.unit_cost_per_hour is not None and policy.cost_ceiling_per_hour is not None:
        cost = desired * policy.unit_cost_per_hour
        if cost > policy.cost_ceiling_per_hour:
            ceiling = policy.cost_ceiling_per_hour
            return f"{desired} units cost {cost:.2f}/h, above the ceiling of {ceiling:.2f}/h"
    return None
