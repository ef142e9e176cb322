"""AutopilotWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. A deprecated patch's call stays until every run recorded its
marker as deprecated; then its function here and its calls in workflows/autopilot.py are deleted.
The calls stand where `workflow.patched` stood, so a history's markers meet them in the recorded order.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 26: every run began under release 25 or later (release 26's note), so each keeps
# hosts in watchers and actions in their own workflows (the old path, which probed and drained, is deleted).
HOSTS_APART = "autopilot-hosts-apart"


def hosts_apart() -> None:
    """The marker each run records first."""
    workflow.deprecate_patch(HOSTS_APART)
