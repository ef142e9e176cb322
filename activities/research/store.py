"""Knowledge-base activities of the research cycle and of experiments: open and close cycles, list what is
left to analyse, record experiments.

The knowledge base itself is activities/storage/ (opened on first use, each call in a thread).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, time

from temporalio import activity

from activities.models.llm import LlmGateway
from activities.research.analysis import analyser_label
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.llm.types import price_of
from autarky.research.items import ExperimentRef, ExperimentUpdate
from autarky.research.types import (
    SOURCES,
    AnalysisFailure,
    CandidatesInput,
    CycleOutcome,
    CyclePlan,
    ExperimentStep,
    ItemScore,
    OpenCycleInput,
    PendingInput,
)


class ResearchStoreActivities:
    def __init__(
        self,
        settings: AutarkySettings,
        kb: KnowledgeBaseHandle | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.settings = settings
        self.kb = kb or KnowledgeBaseHandle(settings.knowledge_db_url)
        self.environ = environ

    @activity.defn(name="open_research_cycle")
    async def open_cycle(self, request: OpenCycleInput) -> CyclePlan:
        """Record the cycle as running and say how it runs: analyser, limits, budgets, watermarks."""
        research, llm = self.settings.research, self.settings.llm
        midnight = datetime.combine(request.started_at.astimezone(UTC).date(), time(), tzinfo=UTC)

        choice = LlmGateway(llm, self.settings.llm_environ(self.environ)).choice
        priced = choice is not None and price_of(llm.prices, choice.model) is not None

        def open_and_read() -> CyclePlan:
            kb = self.kb.get()
            kb.open_cycle(request.cycle_id, request.trigger, request.started_at)
            return CyclePlan(
                analyser=analyser_label(llm, self.settings.llm_environ(self.environ)),
                concurrency=research.analysis_concurrency,
                max_items=research.max_items_per_cycle,
                experiment_threshold=research.experiment_threshold,
                budget_per_cycle_usd=llm.budget_per_cycle_usd,
                budget_per_day_usd=llm.budget_per_day_usd,
                spent_today_usd=kb.spent_since(midnight),
                approval_timeout=research.experiment_approval_timeout,
                priced=priced,
                max_experiments=research.max_experiments_per_cycle,
                # No watermark yet (the very first cycle): look back `first_lookback`, not to the beginning.
                watermarks={
                    source: kb.watermark(source) or request.started_at - research.first_lookback
                    for source in SOURCES
                },
            )

        return await self.kb.run(open_and_read)

    @activity.defn(name="unanalysed_items")
    async def unanalysed_items(self, request: PendingInput) -> list[int]:
        return await self.kb.run(lambda: self.kb.get().unanalysed_items(request.limit))

    @activity.defn(name="count_unanalysed_items")
    async def count_unanalysed(self) -> int:
        return await self.kb.run(lambda: self.kb.get().count_unanalysed())

    @activity.defn(name="record_analysis_failure")
    async def record_analysis_failure(self, failure: AnalysisFailure) -> bool:
        ref = f"{failure.cycle_id}/{failure.item_id}"
        return await self.kb.run(
            lambda: self.kb.get().record_analysis_failure(failure.item_id, failure.error, failure.cost, ref)
        )

    @activity.defn(name="experiment_candidates")
    async def experiment_candidates(self, request: CandidatesInput) -> list[ItemScore]:
        """Analysed items above the threshold without an experiment yet (this cycle's or an earlier one's
        that could not start them)."""
        found = await self.kb.run(
            lambda: self.kb.get().experiment_candidates(request.min_score, request.limit)
        )
        return [
            ItemScore(item_id=i.item_id, score=i.score, source=i.source, source_id=i.source_id) for i in found
        ]

    @activity.defn(name="close_research_cycle")
    async def close_cycle(self, outcome: CycleOutcome) -> None:
        await self.kb.run(lambda: self.kb.get().close_cycle(outcome))

    @activity.defn(name="open_experiment")
    async def open_experiment(self, step: ExperimentStep) -> ExperimentRef:
        return await self.kb.run(
            lambda: self.kb.get().create_or_get_experiment(step.workflow_id, step.item_id)
        )

    @activity.defn(name="update_experiment")
    async def update_experiment(self, update: ExperimentUpdate) -> ExperimentRef:
        return await self.kb.run(lambda: self.kb.get().update_experiment(update))
