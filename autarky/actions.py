"""The catalogue of action types the autopilot can execute.

Adding an action type is one entry here plus the activity or child workflow that carries it out (it
takes an `ActionRequest` and returns an `ActionResult`); the planner (autarky.policy.remediation) then
proposes it for the findings it helps with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Runner(StrEnum):
    ACTIVITY = "activity"
    CHILD_WORKFLOW = "child_workflow"


class QueueRole(StrEnum):
    MAIN = "main"  # any Autarky worker
    CONTROL = "control"  # only the `autarky up` process, which owns the local worker pool


@dataclass(frozen=True)
class ActionSpec:
    action_type: str
    description: str
    runner: Runner
    name: str  # activity or workflow type name
    prior_success: float  # Beta prior mean before any outcome is seen
    timeout: timedelta = timedelta(minutes=5)
    queue: QueueRole = QueueRole.MAIN


NOTIFY = "notify"
CLEAR_CACHE = "clear_cache"
RESTART_WORKER_POOL = "restart_worker_pool"

ACTIONS: dict[str, ActionSpec] = {
    spec.action_type: spec
    for spec in (
        ActionSpec(
            NOTIFY,
            "record a notification for the operators",
            Runner.ACTIVITY,
            "notify",
            0.95,
            timeout=timedelta(seconds=30),
        ),
        ActionSpec(CLEAR_CACHE, "delete Autarky's own cache files", Runner.ACTIVITY, "clear_cache", 0.9),
        ActionSpec(
            RESTART_WORKER_POOL,
            "rolling restart of the local worker pool",
            Runner.ACTIVITY,
            "restart_worker_pool",
            0.8,
            timeout=timedelta(minutes=10),
            queue=QueueRole.CONTROL,
        ),
        # Scaling, A/B tests and self-modification arrive as Runner.CHILD_WORKFLOW entries.
    )
}

PRIORS: dict[str, float] = {t: spec.prior_success for t, spec in ACTIONS.items()}
