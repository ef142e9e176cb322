"""AutopilotWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. A deprecated patch's call stays until every run recorded its
marker as deprecated; then its function here and its calls in workflows/autopilot.py are deleted.
The calls stand where `workflow.patched` stood, so a history's markers meet them in the recorded order.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 25 (every run has Analyze round 2; the round-1 detectors are deleted).
ANALYZE_ROUND_2 = "analyze-round-2"
# Patched in release 25: a watcher workflow per host, actions in their own workflows, ids never reused.
HOSTS_APART = "autopilot-hosts-apart"


def at_run_start() -> None:
    """The marker each run records first."""
    workflow.deprecate_patch(ANALYZE_ROUND_2)


def hosts_apart() -> bool:
    """Right after `at_run_start`: whether the run keeps hosts in watchers and actions in their own
    workflows (no draining before continue-as-new, ids unique across autopilots). Older runs probe every
    host themselves, run actions as their own activities and children, and drain."""
    return workflow.patched(HOSTS_APART)
