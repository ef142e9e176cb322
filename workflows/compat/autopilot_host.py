"""AutopilotHostWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 29: every watcher continued-as-new under release 28 or later (release 28's note),
# so each scales its pool by round 2 (round 1, `pool_policy_round1`, CPU thresholds and a cooldown, is
# deleted).
POOL_SCALING_ROUND_2 = "pool-scaling-round-2"


def pool_scaling_round_2() -> None:
    """Where the local pool is scaled on its slots in use and backlog (round 2; before release 28 on host
    CPU and backlog with a cooldown). Called only with pool scaling on."""
    workflow.deprecate_patch(POOL_SCALING_ROUND_2)


DETECTION_ROUND_3 = "detection-round-3"


def detection_round() -> int:
    """Analyze with round 3's detectors (anomaly memory in hours and …, leak and trend tests that hold on
    warm-ups, persistent noise and spread steps), or round 2's (before release 29)?"""
    return 3 if workflow.patched(DETECTION_ROUND_3) else 2
