"""The local worker pool as a scalable resource (`local-pool/<host>`): read and set its size.

Capacity is the pool's running, healthy members: a member is healthy when its process is alive and the
server lists it (identity `<pid>@<host>`) among the pollers of the pool's queue `<pool_task_queue>@<host>`.
These activities run on the host's control queue, served only by the `autarky up` owning the pool.
Setting a size is idempotent by nature (start or stop members until exactly N run), so a retried
activity never starts a second member for the same slot.
"""

from __future__ import annotations

import asyncio

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.infra.task_queues import describe_activity_queue
from activities.infra.worker_pool import LocalWorkerPool, heartbeating
from autarky.core.hosts import host_queue, worker_identity
from autarky.scaling.policy_types import ResourceKind, ResourceRef
from autarky.scaling.types import CapacityReading, ReadCapacityInput, SetCapacityInput

log = structlog.get_logger(__name__)


class LocalPoolScalingActivities:
    def __init__(self, pool: LocalWorkerPool, host_id: str, pool_task_queue: str) -> None:
        self.pool = pool
        self.host_id = host_id
        self.pool_queue = host_queue(pool_task_queue, host_id)

    @activity.defn(name="read_capacity_local_pool")
    async def read_capacity(self, request: ReadCapacityInput) -> CapacityReading:
        self._check(request.resource)
        return await self._reading(request.resource)

    @activity.defn(name="set_capacity_local_pool")
    async def set_capacity(self, request: SetCapacityInput) -> CapacityReading:
        self._check(request.resource)
        async with heartbeating():  # stopping a member lets it drain for up to 30 s
            try:
                await asyncio.to_thread(self.pool.set_size, request.desired)
            except OSError as error:
                raise ApplicationError(
                    f"could not resize the local worker pool to {request.desired}: {error}",
                    non_retryable=True,
                ) from error
        log.info("local pool resized", size=request.desired, key=request.idempotency_key)
        return await self._reading(request.resource)

    async def _reading(self, resource: ResourceRef) -> CapacityReading:
        members = await asyncio.to_thread(self.pool.members)
        stats = await describe_activity_queue(activity.client(), self.pool_queue)
        polling = {p.identity for p in stats.pollers}
        healthy = [m for m in members if worker_identity(m.process.pid, self.host_id) in polling]
        desired = await asyncio.to_thread(self.pool.desired_size, len(members))
        waiting = f"; {stats.backlog} tasks waiting" if stats.backlog else ""
        return CapacityReading(
            resource=resource,
            desired=desired,
            running=len(members),
            healthy=len(healthy),
            detail=f"{len(members)} running, {len(healthy)} polling {self.pool_queue}{waiting}",
        )

    def _check(self, resource: ResourceRef) -> None:
        if resource.kind != ResourceKind.LOCAL_POOL or resource.name != self.host_id:
            raise ApplicationError(
                f"this worker manages local-pool/{self.host_id}, not {resource.id}: the request reached "
                "the wrong host's control queue",
                non_retryable=True,
            )
