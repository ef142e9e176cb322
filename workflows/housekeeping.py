"""HousekeepingWorkflow: the scheduled clean-up of Autarky's own files (old cache entries)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from autarky import search_attributes as sa
    from autarky.types import ActionResult, HousekeepingInput, PruneCacheInput


@workflow.defn(name="HousekeepingWorkflow")
class HousekeepingWorkflow:
    @workflow.run
    async def run(self, input: HousekeepingInput) -> ActionResult:
        workflow.upsert_search_attributes([sa.KIND.value_set("housekeeping")])
        result = await workflow.execute_activity(
            "prune_cache",
            PruneCacheInput(max_age=input.max_age, reason="scheduled housekeeping"),
            result_type=ActionResult,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=5),
            summary=f"prune cache files older than {input.max_age}",
        )
        workflow.set_current_details(result.detail)
        return result
