"""The goal check's back-off (issue 30, item 1) on the real Temporal server: `agent_shortfalls` reads this
installation's evolutions of an agent from the server's visibility (their AutarkyDecision), measures the
active version in the real sandbox, and proposes an evolution only once 2^k cooldowns have passed since
the last one, k being the evolutions in a row that promoted nothing; a promotion ends the streak.

The evolutions are stand-ins: closed workflows with the ids and task queue the goal check looks for, whose
only act is to set the decision an evolution sets. The times are never guessed: each check reads how long
ago the last one started, picks the cooldown from that, and counts only when the check ran inside the
window it was meant for (else it looks again, later: the window grows with the wait)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.selfmod.activities import SelfModActivities
from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import agent_spec
from autarky.selfmod.goals import bar_figure
from autarky.selfmod.types import ShortfallInput
from tests.test_autopilot import eventually

AGENT = "relevance-scorer"
MIN_AGE = timedelta(seconds=4)  # the last run is at least this old at a check: cooldowns of seconds


@workflow.defn(name="GoalCheckStandInEvolution")
class StandInEvolution:
    """Ends at once with the decision an evolution ends with."""

    @workflow.run
    async def run(self, decision: str) -> str:
        workflow.upsert_search_attributes([sa.DECISION.value_set(decision)])
        return decision


class GoalCheck:
    def __init__(self, client: Client, tmp_path: Path) -> None:
        self.client = client
        self.settings = AutarkySettings(data_dir=tmp_path, task_queue=f"goal-{uuid.uuid4().hex[:8]}")
        self.acts = SelfModActivities(self.settings, {})
        self.env = ActivityEnvironment(client=client)
        self.tag = uuid.uuid4().hex[:6]
        self.runs = 0

    async def proposed(self, cooldown: timedelta) -> set[str]:
        found = await self.env.run(self.acts.agent_shortfalls, ShortfallInput(cooldown=cooldown))
        return {s.agent for s in found}

    async def evolution(self, decision: str) -> WorkflowHandle:
        """A closed evolution of AGENT with `decision`, once the goal check's query can see it."""
        self.runs += 1
        handle = await self.client.start_workflow(
            StandInEvolution.run,
            decision,
            id=f"evolve/{AGENT}/{self.tag}-{self.runs}",
            task_queue=self.settings.task_queue,
        )
        assert await handle.result() == decision
        query = f'WorkflowId STARTS_WITH "evolve/{AGENT}/" AND TaskQueue = "{self.settings.task_queue}"'

        async def visible() -> bool:  # visibility lags the close a moment on the dev server
            seen = {e.id: e async for e in self.client.list_workflows(query)}
            last = seen.get(handle.id)
            return (
                len(seen) == self.runs
                and last is not None
                and (last.typed_search_attributes.get(sa.DECISION) == decision)
            )

        await eventually(visible)
        return handle

    async def within(self, last: WorkflowHandle, doublings: int, waits: float) -> tuple[set[str], float]:
        """The check with a cooldown such that the last run started `waits` × 2^doublings cooldowns
        before it, run again later until it did (a slow check overshoots the window, the next one is
        made wider by the wait). Returns (proposed, the age of the last run in cooldowns)."""
        started = (await last.describe()).start_time
        while True:
            age = datetime.now(UTC) - started
            if age < MIN_AGE:
                await asyncio.sleep((MIN_AGE - age).total_seconds())
                continue
            cooldown = age / (waits * 2**doublings)
            found = await self.proposed(cooldown)
            after = (datetime.now(UTC) - started) / cooldown
            # Meant: the age at the check is between `waits` and twice `waits` units of 2^doublings.
            if waits >= 1.0 or after < 2 * waits * 2**doublings:
                return found, after


@pytest.mark.slow
async def test_the_goal_check_backs_off_after_evolutions_that_promoted_nothing(
    client: Client, tmp_path: Path
) -> None:
    check = GoalCheck(client, tmp_path)
    spec = agent_spec(AGENT)
    async with Worker(
        client,
        task_queue=check.settings.task_queue,
        workflows=[StandInEvolution],
        workflow_runner=UnsandboxedWorkflowRunner(),  # a stand-in of the test's own, nothing to guard
    ):
        # Never evolved: proposed, its figure measured in the sandbox (the premise: a bar short of goal).
        found = await check.env.run(check.acts.agent_shortfalls, ShortfallInput(cooldown=timedelta(days=7)))
        [scorer] = [s for s in found if s.agent == AGENT]
        assert spec.goal is not None and bar_figure(spec, scorer.figure) <= spec.goal, scorer

        for failures in (1, 2):
            last = await check.evolution("not_promoted")
            # 2^(k-1) cooldowns passed, not 2^k: not yet (after k=1, a week's cooldown waits two).
            found, age = await check.within(last, failures, waits=0.5)
            assert AGENT not in found, f"{failures} failure(s), {age:.2f} cooldowns after the last run"
            # 2^k cooldowns passed: due.
            found, age = await check.within(last, failures, waits=1.0)
            assert AGENT in found, f"{failures} failure(s), {age:.2f} cooldowns after the last run"

        # A promotion ends the streak: one cooldown after it is enough (the two failures before count not).
        last = await check.evolution("promoted")
        found, age = await check.within(last, 0, waits=0.5)
        assert AGENT not in found, f"evolved {age:.2f} cooldowns ago"
        found, age = await check.within(last, 0, waits=1.0)
        assert AGENT in found, f"after a promotion, {age:.2f} cooldowns after it"
        # …and the next failure starts a new count at one (it waits 2 cooldowns, not 2^3).
        last = await check.evolution("not_promoted")
        found, age = await check.within(last, 1, waits=1.0)
        assert AGENT in found, f"one failure since the promotion, {age:.2f} cooldowns after it"
