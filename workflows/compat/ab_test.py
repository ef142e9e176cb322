"""ModelABTestWorkflow's patches: what it keeps only so that tests begun under older releases replay.

See docs/patches.md for the lifecycle. A deprecated patch's call stays until every run recorded its
marker as deprecated; then its function here and its call in workflows/ab_test.py are deleted.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 28: every test began under release 27 or later (release 27's note: each test
# started before it has ended), so each takes round 2's path (round 1, `run_round_1` and the frozen
# release-26 `_evaluate`, is deleted).
ROUND_2 = "abtest-round-2"


def round_2() -> None:
    """When a test begins, before its first command, where round 2's path was chosen."""
    workflow.deprecate_patch(ROUND_2)
