"""The catalogue of action types the autopilot can execute.

Adding an action type is one entry here plus the activity or child workflow that carries it out (it
takes an `ActionRequest` and returns an `ActionResult`); the planner (autopilot.policy.remediation) then
proposes it for the findings it helps with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel

from autarky.autopilot.types import HousekeepingInput
from autarky.core.actions import ActionRequest


class Runner(StrEnum):
    ACTIVITY = "activity"
    CHILD_WORKFLOW = "child_workflow"


class QueueRole(StrEnum):
    MAIN = "main"  # any Autarky worker (the shared task queue)
    HOST = "host"  # a worker on the host whose finding the action answers (its host queue)
    CONTROL = "control"  # the process owning that host's local worker pool (its control queue)


@dataclass(frozen=True)
class ActionSpec:
    action_type: str
    description: str
    runner: Runner
    name: str  # activity or workflow type name
    prior_success: float  # Beta prior mean before any outcome is seen
    timeout: timedelta = timedelta(minutes=5)
    queue: QueueRole = QueueRole.MAIN
    heartbeats: bool = False  # reports progress: a silent worker is replaced after a heartbeat timeout
    # Child workflows whose input is not the ActionRequest itself.
    child_input: Callable[[ActionRequest], BaseModel] | None = None
    # Paced by a cooldown of its own (the scaler's), not by the autopilot's action_cooldown.
    own_cooldown: bool = False


NOTIFY = "notify"
CLEAR_CACHE = "clear_cache"
RESTART_WORKER_POOL = "restart_worker_pool"
PRUNE_CACHE = "prune_cache"
SCALE_POOL = "scale_pool"
START_ABTEST = "start_abtest"
EVOLVE_AGENT = "evolve_agent"


def _housekeeping_input(request: ActionRequest) -> HousekeepingInput:
    return HousekeepingInput(host=request.host, reason=f"{request.action_id}: {request.reason}")


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
        ActionSpec(
            CLEAR_CACHE,
            "delete Autarky's own cache files",
            Runner.ACTIVITY,
            "clear_cache",
            0.9,
            queue=QueueRole.HOST,
        ),
        ActionSpec(
            PRUNE_CACHE,
            "delete Autarky's cache files older than a week (the housekeeping workflow, on one host)",
            Runner.CHILD_WORKFLOW,
            "HousekeepingWorkflow",
            0.95,
            child_input=_housekeeping_input,
        ),
        ActionSpec(
            RESTART_WORKER_POOL,
            "rolling restart of the local worker pool",
            Runner.ACTIVITY,
            "restart_worker_pool",
            0.8,
            timeout=timedelta(minutes=10),
            queue=QueueRole.CONTROL,
            heartbeats=True,
        ),
        ActionSpec(
            SCALE_POOL,
            "grow or shrink the host's local worker pool (through its ScalerWorkflow's saga)",
            Runner.ACTIVITY,
            "request_scaling",
            0.85,
            timeout=timedelta(minutes=15),  # the saga waits for health, up to the scaler's timeout
            heartbeats=True,
            own_cooldown=True,
        ),
        ActionSpec(
            START_ABTEST,
            "start an A/B test of a model variant that was never tested (ModelABTestWorkflow)",
            Runner.ACTIVITY,
            "start_model_abtest",
            0.9,
            timeout=timedelta(minutes=1),
        ),
        ActionSpec(
            EVOLVE_AGENT,
            "start a self-modification of an agent short of its goal (SelfModificationWorkflow)",
            Runner.ACTIVITY,
            "start_agent_evolution",
            0.9,
            timeout=timedelta(minutes=1),
        ),
    )
}

PRIORS: dict[str, float] = {t: spec.prior_success for t, spec in ACTIONS.items()}
