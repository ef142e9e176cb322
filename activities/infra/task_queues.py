"""Task-queue statistics: how much work waits in a queue, how long the oldest has waited, who polls.

The server keeps these figures (DescribeTaskQueue with `report_stats`); the backlog and its age tell
whether a worker pool is big enough where CPU alone cannot (work waiting on I/O, or on too few slots).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client


class TaskQueueProbeInput(BaseModel):
    task_queue: str


class Poller(BaseModel):
    identity: str
    last_polled: datetime | None = None


class TaskQueueStats(BaseModel):
    task_queue: str
    backlog: int = Field(ge=0)  # approximate count of activity tasks waiting
    backlog_age_seconds: float = Field(ge=0)  # how long the oldest waiting task has waited
    add_rate: float = 0.0  # tasks per second, as the server estimates them
    dispatch_rate: float = 0.0
    pollers: list[Poller] = Field(default_factory=list)


async def describe_activity_queue(client: Client, task_queue: str) -> TaskQueueStats:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_stats=True,
        )
    )
    stats = response.stats
    return TaskQueueStats(
        task_queue=task_queue,
        backlog=max(0, stats.approximate_backlog_count),
        backlog_age_seconds=max(0.0, stats.approximate_backlog_age.ToTimedelta().total_seconds()),
        add_rate=stats.tasks_add_rate,
        dispatch_rate=stats.tasks_dispatch_rate,
        pollers=[
            Poller(
                identity=p.identity,
                last_polled=p.last_access_time.ToDatetime(tzinfo=UTC)
                if p.HasField("last_access_time")
                else None,
            )
            for p in response.pollers
        ],
    )


def _last_access(poller: PollerInfo) -> datetime | None:
    return poller.last_access_time.ToDatetime(tzinfo=UTC) if poller.HasField("last_access_time") else None


@activity.defn(name="probe_task_queue")
async def probe_task_queue(request: TaskQueueProbeInput) -> TaskQueueStats:
    return await describe_activity_queue(activity.client(), request.task_queue)
