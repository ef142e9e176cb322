"""ScalerWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. Each function is called where its new path branches off, only when
the situation arises, so a history without the situation never records the marker. A deprecated patch's
call stays until every run recorded its marker as deprecated; then its function here and its call in
workflows/scaling.py are deleted.
"""

from __future__ import annotations

from temporalio import workflow

CANCEL_AFTER_APPLY = "scaling-cancel-after-apply"
REFUSED_APPLY = "scaling-refused-apply"
APPROVE_SCALE_DOWN = "scaling-approve-scale-down"


def cancel_after_apply() -> None:
    """Where a cancel that arrived while the apply ran (the activity finished and the SDK kept its result)
    is undone. Deprecated in release 28: every run began under release 27 or later (release 27's note),
    so none goes on to "succeeded" any more (the old path is deleted)."""
    workflow.deprecate_patch(CANCEL_AFTER_APPLY)


def refused_apply() -> None:
    """Where an apply that failed for good is followed by a reading (nothing changed: "refused", no undo,
    no cooldown). Deprecated in release 28 (the old path, compensating with a cooldown, is deleted)."""
    workflow.deprecate_patch(REFUSED_APPLY)


def approve_scale_down() -> bool:
    """A shrink beyond the blast radius: ask a person, as for a growth? Before release 28 any scale-down
    ran at once (10 → 0 included)."""
    return workflow.patched(APPROVE_SCALE_DOWN)
