"""SelfModificationWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Patched: a run may wait for a person up to its approval timeout (3 days by default) and then watch;
# one begun before this release asked by the old rule and must replay it.
REVIEWS_SOURCES = "selfmod-reviews-sources"


def reviews_sources() -> bool:
    """Whether a promotion asks a person whenever the version's sources differ from the shipped ones
    (whoever wrote them), showing the diff stored in the knowledge base."""
    return workflow.patched(REVIEWS_SOURCES)
