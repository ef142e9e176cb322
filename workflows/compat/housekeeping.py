"""HousekeepingWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated: every run prunes per host (the single-queue prune of older runs is deleted).
PER_HOST_HOUSEKEEPING = "per-host-housekeeping"


def per_host_housekeeping() -> None:
    """Where a run decided between the single-queue prune and the per-host one."""
    workflow.deprecate_patch(PER_HOST_HOUSEKEEPING)
