"""ScalerWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. Each function is called where its new path branches off, only when
the situation arises, so a history without the situation never records the marker. A deprecated patch's
call stays until every run recorded its marker as deprecated; then its function here and its call in
workflows/scaling.py are deleted.
"""

from __future__ import annotations

from temporalio import workflow

# Deprecated in release 29: every scaler continued-as-new under release 28 or later (release 28's note),
# so a shrink beyond the blast radius asks a person in every run (the old path, at once, is deleted).
APPROVE_SCALE_DOWN = "scaling-approve-scale-down"


def approve_scale_down() -> None:
    """Where a shrink beyond the blast radius asks a person, as a growth does (before release 28 any
    scale-down ran at once, 10 → 0 included). Called only in that situation."""
    workflow.deprecate_patch(APPROVE_SCALE_DOWN)
