"""ScalerWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. Each function is called where its new path branches off, only when
the situation arises, so a history without the situation never records the marker.
"""

from __future__ import annotations

from temporalio import workflow

CANCEL_AFTER_APPLY = "scaling-cancel-after-apply"
REFUSED_APPLY = "scaling-refused-apply"
APPROVE_SCALE_DOWN = "scaling-approve-scale-down"


def cancel_after_apply() -> bool:
    """A cancel that arrived while the apply ran (the activity finished and the SDK kept its result): undo
    it now? Before release 27 the saga went on waiting until healthy and reported success."""
    return workflow.patched(CANCEL_AFTER_APPLY)


def refused_apply() -> bool:
    """An apply that failed for good: read the resource, and when nothing changed end "refused" (no undo,
    no cooldown)? Before release 27 the saga compensated and started the cooldown."""
    return workflow.patched(REFUSED_APPLY)


def approve_scale_down() -> bool:
    """A shrink beyond the blast radius: ask a person, as for a growth? Before release 28 any scale-down
    ran at once (10 → 0 included)."""
    return workflow.patched(APPROVE_SCALE_DOWN)
