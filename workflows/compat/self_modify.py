"""SelfModificationWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 26: every run began under release 25 or later (release 26's note), so a run's
# steps after the snapshot go to the queue of the host that took it (the old path, the shared queue for
# every step, is deleted).
ONE_HOST = "selfmod-one-host"


def one_host() -> None:
    """Right after the snapshot, where the run's later steps are pinned to the host that took it."""
    workflow.deprecate_patch(ONE_HOST)
