"""Messages of the scaling capability: the providers' activities and the `ScalerWorkflow`.

The policy's own types (resources, knobs, memory) are in autarky.scaling.policy_types.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import activity

from autarky.core.approval import ApprovalRequest
from autarky.core.durations import Duration
from autarky.scaling.policy_types import ResourceRef, ScalingPolicy

# ---------------------------------------------------------------------------------------- providers


class ReadCapacityInput(BaseModel):
    resource: ResourceRef


class CapacityReading(BaseModel):
    resource: ResourceRef
    desired: int  # what the resource is set to
    running: int  # members that exist (instances, tasks, processes)
    healthy: int  # members that serve: in service and healthy, or alive and polling
    detail: str = ""

    @property
    def settled(self) -> bool:
        return self.healthy == self.desired == self.running


class SetCapacityInput(BaseModel):
    resource: ResourceRef
    desired: int = Field(ge=0)
    # Derived from the workflow id and the saga's step: what a retry looks up before creating anything.
    idempotency_key: str = Field(min_length=1, max_length=64)


# ---------------------------------------------------------------------------------------- the scaler


class SagaStep(StrEnum):
    WAITING_APPROVAL = "waiting for approval"
    RECORDING = "recording the current capacity"
    APPLYING = "applying the new capacity"
    WAITING_HEALTHY = "waiting until healthy"
    VERIFYING = "verifying"
    COMPENSATING = "compensating"
    DONE = "done"


class OperationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"  # already at the requested capacity
    COMPENSATED = "compensated"  # failed or cancelled, and capacity is back where it was
    REJECTED = "rejected"  # a person said no (blast radius), or the request expired unanswered
    REFUSED = "refused"  # the provider refused the change before anything changed (no undo, no cooldown)


class ScaleRequest(BaseModel):
    desired: int = Field(ge=0)
    reason: str = Field(min_length=1)
    requested_by: str = Field(min_length=1)
    # Inside the cooldown: "reject" refuses the request; "queue" runs it once the cooldown ends.
    if_cooling: Literal["reject", "queue"] = "reject"
    # Caller's id for the request (e.g. the autopilot's action id): the same id never runs twice.
    request_id: str | None = None


class ScaleOperation(BaseModel):
    operation_id: str  # "<workflow id>/<n>"
    request: ScaleRequest
    status: OperationStatus = OperationStatus.QUEUED
    step: SagaStep | None = None
    previous: int | None = None
    target: int
    reached: int | None = None  # capacity when the operation ended
    detail: str = ""
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status not in (OperationStatus.QUEUED, OperationStatus.RUNNING)


class ScalerState(BaseModel):
    """Carried across continue-as-new: the cooldown clock, the history, what waits."""

    capacity: int | None = None  # the last reading
    healthy: int | None = None
    last_event_at: datetime | None = None  # the last change of capacity (starts the cooldown)
    operations: list[ScaleOperation] = Field(default_factory=list)  # newest last, bounded
    sequence: int = 0  # operations numbered so far
    repairs: int = 0  # dead pool members replaced by reconciling
    last_problem: str | None = None  # the last reconcile's failure, until one succeeds


class ScalerInput(BaseModel):
    resource: ResourceRef
    policy: ScalingPolicy = Field(default_factory=ScalingPolicy)
    # Where the provider's activities run (the local pool: its host's control queue).
    provider_task_queue: str
    health_timeout: Duration = Field(timedelta(minutes=5), gt=timedelta(0))
    health_poll_interval: Duration = Field(timedelta(seconds=10), gt=timedelta(0))
    # How often the scaler compares the resource with its desired capacity (a killed member is replaced).
    reconcile_interval: Duration = Field(timedelta(minutes=1), gt=timedelta(0))
    approval_timeout: Duration = Field(timedelta(hours=1), gt=timedelta(0))
    read_timeout: Duration = Field(timedelta(seconds=30), gt=timedelta(0))  # one reading of the resource
    # A compensation refused for good (e.g. access denied) tries again after this, doubling to 10 min.
    compensation_backoff: Duration = Field(timedelta(seconds=10), gt=timedelta(0))
    state: ScalerState | None = None
    approvals: list[ApprovalRequest] = Field(default_factory=list)  # carried for the approval gate
    iterations_per_run: int = Field(200, ge=1)


class ScalerStatus(BaseModel):
    resource: ResourceRef
    capacity: int | None
    healthy: int | None
    min_capacity: int
    max_capacity: int
    cooldown_remaining_seconds: float
    current: ScaleOperation | None
    last: ScaleOperation | None
    queued: int
    pending_approvals: int
    problem: str | None = None  # why the scaler could not read its resource lately


# ---------------------------------------------------------------------------------------- activity stubs
# The providers' activities the scaler schedules, typed: the SDK takes each one's name and result type from
# these. The implementations are LocalPoolScalingActivities (activities/infra/local_pool_scaling.py) and
# AwsScalingActivities (activities/infra/aws_scaling.py, whose boto3 stays out of workflows);
# tests/test_activity_contract.py keeps names and types equal to the registered ones.

_IN_LOCAL_POOL = "activities/infra/local_pool_scaling.py (LocalPoolScalingActivities)"
_IN_AWS = "activities/infra/aws_scaling.py (AwsScalingActivities)"


@activity.defn(name="read_capacity_local_pool")
async def read_capacity_local_pool(request: ReadCapacityInput) -> CapacityReading:
    raise NotImplementedError(_IN_LOCAL_POOL)


@activity.defn(name="set_capacity_local_pool")
async def set_capacity_local_pool(request: SetCapacityInput) -> CapacityReading:
    raise NotImplementedError(_IN_LOCAL_POOL)


@activity.defn(name="read_capacity_aws")
async def read_capacity_aws(request: ReadCapacityInput) -> CapacityReading:
    raise NotImplementedError(_IN_AWS)


@activity.defn(name="set_capacity_aws")
async def set_capacity_aws(request: SetCapacityInput) -> CapacityReading:
    raise NotImplementedError(_IN_AWS)
