"""A workflow that does what SelfModificationWorkflow does with an agent made by genesis: reads its default
parameters in workflow code (tests/test_agent_genesis.py)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from autarky.selfmod.agents import default_parameters


@workflow.defn
class DefaultsProbe:
    @workflow.run
    async def run(self, name: str) -> dict[str, float]:
        return default_parameters(name)
