"""AutopilotHostWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

POOL_SCALING_ROUND_2 = "pool-scaling-round-2"


def pool_scaling_round_2() -> bool:
    """Scale the local pool on its slots in use and backlog (round 2), or on host CPU and backlog with a
    cooldown (round 1, before release 28)?"""
    return workflow.patched(POOL_SCALING_ROUND_2)
