"""ExperimentWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Patched: an experiment waits up to its approval timeout (7 days) for a person, so one begun before
# release 16 may still be waiting; approved, it must not start an evolution.
EVOLVES_AGENT = "experiment-evolves-agent"


def evolves_agent() -> bool:
    """Whether an approved experiment whose plan names an agent starts that agent's evolution."""
    return workflow.patched(EVOLVES_AGENT)
