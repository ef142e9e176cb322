"""The autopilot's goal check of the evolvable agents (`agent_shortfalls`): a mixin of SelfModActivities.

An agent is proposed for evolution when autarky.selfmod.goals says it is worth it: short of its goal by at
least its bar, and not tried in vain lately (the wait doubles after each evolution in a row that promoted
nothing, unless the decision data changed since). The active version's figure on the decision part is
measured in the sandbox once per version and kept in figure.json.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from autarky.core import search_attributes as sa
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import AGENTS
from autarky.selfmod.goals import MAX_DOUBLINGS, evolution_due
from autarky.selfmod.types import AgentShortfall, MeasuredFigure, MeasureInput, ShortfallInput

if TYPE_CHECKING:
    from activities.selfmod.evaluation import Dataset
    from activities.selfmod.versions import AgentRepository
    from activities.storage.handle import KnowledgeBaseHandle
    from autarky.selfmod.types import AgentSpec, Measurement

# Evolutions of an agent read for its back-off: more than the longest run of failures it counts.
RECENT_RUNS = MAX_DOUBLINGS + 8


class GoalChecks:
    """Methods of SelfModActivities; what it uses of it is declared for the type checker only."""

    if TYPE_CHECKING:
        settings: AutarkySettings
        root: Path
        kb: KnowledgeBaseHandle

        def repository(self, agent: str) -> tuple[AgentSpec, AgentRepository]: ...

        def dataset(self, agent: str, part: str) -> Dataset: ...

        async def measure(self, request: MeasureInput) -> Measurement: ...

    @activity.defn
    async def agent_shortfalls(self, request: ShortfallInput) -> list[AgentShortfall]:
        """Agents worth evolving (autarky.selfmod.goals): short of the goal on the decision part, a bar that
        can be cleared, and not tried in vain lately (the wait doubles after each evolution in a row that
        promoted nothing, unless the decision data changed). The figure is measured in the sandbox once per
        version and data version and kept in figure.json."""
        found: list[AgentShortfall] = []
        for spec in AGENTS.values():
            if spec.goal is None:
                continue
            failed, last_run = await self._recent_failures(spec.name)
            pointer = (await asyncio.to_thread(self.repository, spec.name))[1].active()
            current = self.dataset(spec.name, "decision").version()
            figure = await self._figure(spec.name, pointer.commit, current)
            new_data = False
            if failed:
                from activities.selfmod.decision_looks import looked_at  # SQLAlchemy: on first use

                looked = {await self.kb.run(looked_at, self.kb, spec.name, run) for run in failed} - {None}
                # They compared on other data, none on this: the decision part is news to them.
                new_data = bool(looked) and current not in looked
            due = evolution_due(
                spec,
                figure,
                failures=len(failed),
                last_run=last_run,
                now=datetime.now(UTC),
                cooldown=request.cooldown,
                new_data=new_data,
            )
            activity.logger.info("goal check of %s: %s", spec.name, due.reason)
            if due.due:
                found.append(
                    AgentShortfall(
                        agent=spec.name,
                        commit=pointer.commit,
                        figure=figure,
                        goal=spec.goal,
                        metric=spec.metric,
                    )
                )
        return found

    async def _recent_failures(self, agent: str) -> tuple[list[str], datetime | None]:
        """(the look keys of this installation's latest evolutions of `agent` in a row that promoted
        nothing or failed, when the latest evolution started)."""
        query = (
            f'WorkflowId STARTS_WITH "evolve/{agent}/" '
            f'AND TaskQueue = "{self.settings.task_queue}"'  # this installation's
        )
        runs = [e async for e in activity.client().list_workflows(query, limit=RECENT_RUNS)]
        runs.sort(key=lambda e: e.start_time, reverse=True)
        failed: list[str] = []
        for execution in runs:
            decision = execution.typed_search_attributes.get(sa.DECISION)
            # Terminated, timed out or crashed: it ended still saying "running", and promoted nothing.
            cut_short = decision in (None, "running") and execution.status != WorkflowExecutionStatus.RUNNING
            if decision not in ("not_promoted", "failed") and not cut_short:
                break
            failed.append(f"{execution.id}@{execution.run_id[:8]}")  # the run id its looks are kept by
        return failed, runs[0].start_time if runs else None

    async def _figure(self, agent: str, commit: str, data_version: str) -> float:
        path = _figure_path(self.root, agent)
        if path.exists():
            cached = MeasuredFigure.model_validate_json(path.read_text())
            if (cached.commit, cached.data_version) == (commit, data_version):
                return cached.figure
        measured = await self.measure(
            MeasureInput(agent=agent, run_id="goal-check", part="decision", commits=[commit], label="goal")
        )
        if commit not in measured.figures:
            raise ApplicationError(
                f"the active version of {agent} fails its benchmark: {measured.failures.get(commit)}",
                type="BenchmarkFailed",
                non_retryable=True,
            )
        figure = measured.figures[commit]
        path.write_text(
            MeasuredFigure(
                commit=commit, figure=figure, measured_at=datetime.now(UTC), data_version=data_version
            ).model_dump_json()
        )
        return figure


def _figure_path(root: Path, agent: str) -> Path:
    return root / agent / "figure.json"
