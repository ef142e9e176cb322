"""AutopilotWorkflow's patches (with its fleet mixin): what it keeps only so that runs begun under older
releases replay. See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

PLAN_ON_NEW_SIZE = "autopilot-plan-on-new-size"


def plan_on_new_size() -> bool:
    """Plan at once when a host's scaling finding asks for another size, and when a pool change settles?
    Before release 28 only a new kind of finding did: a pool growing step by step waited for the plan
    round (5 min) between steps, a cooldown in all but name. Called only in those situations."""
    return workflow.patched(PLAN_ON_NEW_SIZE)
