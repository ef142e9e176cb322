"""ModelABTestWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. Each function is called where its new path branches off, only when
the situation arises (a promotion to score), so a history without it never records the marker.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from autarky.models.guardrails import HEADROOM_Z

MARGIN_EVIDENCE = "abtest-margin-evidence"


def headroom_z() -> float:
    """Release 30: the promotion's guardrail margin counts what the challenger used with evidence (each
    excess and level lowered by HEADROOM_Z standard errors); before, the point estimates, so two arms that
    answer alike asked a person in 28-46 % of tests of 40-100 calls. Changes whether an approval is
    requested; called only when an online test's promotion is scored."""
    return HEADROOM_Z if workflow.patched(MARGIN_EVIDENCE) else 0.0
