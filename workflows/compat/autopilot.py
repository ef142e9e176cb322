"""AutopilotWorkflow's patches (with its fleet mixin): what it keeps only so that runs begun under older
releases replay. See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 29: every autopilot continued-as-new under release 28 or later (release 28's
# note), so each plans at once on a pool's new size (the old path, waiting for the plan round, is deleted).
PLAN_ON_NEW_SIZE = "autopilot-plan-on-new-size"


def plan_on_new_size() -> None:
    """Where a host's scaling finding that asks for another size, or a settled `scale_pool`, plans at
    once (before release 28 only a new kind of finding did: a pool growing step by step waited for the
    plan round, 5 min, between steps). Called only in those situations."""
    workflow.deprecate_patch(PLAN_ON_NEW_SIZE)
