"""ResearchCycleWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Patched in release 26 (issue 26): provider-wide analysis failures stop the cycle and count against no
# item, one cycle at a time (a lease), bounded by its own timeout and always reported, the digest written
# after the final status, the sample source. A run begun before goes on as it began.
ROUND_2 = "research-round-2"


def round_2() -> bool:
    """At the start of the run, before its first command: whether it takes round 2's path."""
    return workflow.patched(ROUND_2)
