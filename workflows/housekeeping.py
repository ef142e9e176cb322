"""HousekeepingWorkflow: the clean-up of Autarky's own files (old cache entries) on every host.

Started hourly by its schedule (every host running a worker), or by the autopilot as the `prune_cache`
action for one host's finding. Each host's cache is pruned on that host (its host task queue).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.types import HousekeepingInput, PruneCacheInput, prune_cache
    from autarky.core import search_attributes as sa
    from autarky.core.actions import ActionResult
    from autarky.core.hosts import DiscoverHostsInput, discover_hosts, host_queue

PRUNE_RETRY = RetryPolicy(maximum_attempts=5)
# A host whose worker does not take its prune this soon is gone; the others still get theirs.
HOST_PICKUP_TIMEOUT = timedelta(minutes=1)


@workflow.defn(name="HousekeepingWorkflow")
class HousekeepingWorkflow:
    @workflow.run
    async def run(self, input: HousekeepingInput) -> ActionResult:
        workflow.upsert_search_attributes([sa.KIND.value_set("housekeeping")])
        hosts = [input.host] if input.host else await self._hosts()
        outcomes = await asyncio.gather(*(self._prune(input, h) for h in hosts), return_exceptions=True)
        lines, failed, freed_any = [], [], False
        for host, outcome in zip(hosts, outcomes, strict=True):
            if isinstance(outcome, ActivityError):
                failed.append(host)
                lines.append(f"{host}: failed ({outcome.cause or outcome})")
            elif isinstance(outcome, BaseException):
                raise outcome  # a bug: fail the workflow task
            else:
                freed_any = freed_any or not outcome.nothing_to_do
                lines.append(f"{host}: {outcome.detail}")
        detail = "; ".join(lines) or "no host runs a worker"
        workflow.set_current_details(detail)
        return ActionResult(
            success=not failed,
            detail=detail,
            improvement_measured=False,  # files, not a share of the disk: see clear_cache for that
            nothing_to_do=not failed and not freed_any,
        )

    async def _hosts(self) -> list[str]:
        found = await workflow.execute_activity(
            discover_hosts,
            DiscoverHostsInput(task_queue=workflow.info().task_queue),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PRUNE_RETRY,
            summary="which hosts run a worker",
        )
        return found.hosts

    async def _prune(self, input: HousekeepingInput, host: str) -> ActionResult:
        return await workflow.execute_activity(
            prune_cache,
            PruneCacheInput(max_age=input.max_age, reason=input.reason),
            task_queue=host_queue(workflow.info().task_queue, host),
            schedule_to_start_timeout=HOST_PICKUP_TIMEOUT,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=PRUNE_RETRY,
            summary=f"{host}: prune cache files older than {input.max_age}",
        )
