"""ResearchCycleWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. A deprecated patch's call stays until every run recorded its
marker as deprecated; then its function here and its call in workflows/research.py are deleted.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 27: every run began under release 26 or later (release 27's note), so each takes
# round 2's path (provider-wide failures stop the cycle, the lease, its own timeout, always reported; the
# old path, round 1, is deleted).
ROUND_2 = "research-round-2"


def round_2() -> None:
    """At the start of the run, before its first command, where round 2's path was chosen."""
    workflow.deprecate_patch(ROUND_2)
