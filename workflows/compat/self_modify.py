"""SelfModificationWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 25: every run began under release 24 or later, so a promotion asks a person
# whenever the version's sources differ from the shipped ones (the older rule is deleted).
REVIEWS_SOURCES = "selfmod-reviews-sources"


def reviews_sources() -> None:
    """Before the promotion's sources are compared with the shipped ones (`review_promotion`)."""
    workflow.deprecate_patch(REVIEWS_SOURCES)


# Patched (release 25): a run's steps after the snapshot go to the queue of the host that took it, and move
# to another host when that one stops taking them; a run begun before sent every step to the shared queue.
ONE_HOST = "selfmod-one-host"


def one_host() -> bool:
    """Whether the run's later steps are pinned to the host of its first (its own task queue)."""
    return workflow.patched(ONE_HOST)
