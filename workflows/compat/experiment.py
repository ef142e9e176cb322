"""ExperimentWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 25: every experiment waiting now began under release 16 or later, so an approved
# one whose plan names an agent starts its evolution (the old path, which did not, is deleted).
EVOLVES_AGENT = "experiment-evolves-agent"


def evolves_agent() -> None:
    """Before an approved experiment whose plan names an agent starts that agent's evolution."""
    workflow.deprecate_patch(EVOLVES_AGENT)
