"""Knowledge-base activities of the research cycle and of experiments: open and close cycles, list what is
left to analyse, record experiments.

The knowledge base itself is activities/storage/ (opened on first use, each call in a thread).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, time

from temporalio import activity

from activities.research.analysis import PROMPT_VERSION, analyser_label
from activities.research.offline_analyser import offline_model_label
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.llm.prices import pricing
from autarky.llm.settings import resolve_provider
from autarky.research.items import OFFLINE_MODEL, ExperimentRef, ExperimentUpdate
from autarky.research.types import (
    SOURCES,
    AnalyserKey,
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

    async def analyser_key(self) -> AnalyserKey:
        """The current analyser, whose analyses recent items must have (else they are analysed again)."""
        label = analyser_label(self.settings.llm, self.settings.llm_environ(self.environ))
        if label == OFFLINE_MODEL:
            model = await offline_model_label(self.settings, self.kb)
            return AnalyserKey(label=f"{OFFLINE_MODEL}:{model}", offline=True, model=model)
        return AnalyserKey(label=f"{label}@{PROMPT_VERSION}", offline=False, prompt_version=PROMPT_VERSION)

    @activity.defn(name="open_research_cycle")
    async def open_cycle(self, request: OpenCycleInput) -> CyclePlan:
        """Record the cycle as running and say how it runs: analyser, limits, budgets, watermarks; take the
        one-cycle-at-a-time lease (`held_by` names the cycle holding it when it is not this one's)."""
        research, llm = self.settings.research, self.settings.llm
        midnight = datetime.combine(request.started_at.astimezone(UTC).date(), time(), tzinfo=UTC)

        choice = resolve_provider(llm, self.settings.llm_environ(self.environ))
        # Whether the analyser's calls cost money (a free local model never spends a budget).
        price = pricing(llm.prices, choice.kind, choice.model, choice.base_url) if choice else None
        priced = price is not None and not price.free
        key = await self.analyser_key()

        def open_and_read() -> CyclePlan:
            kb = self.kb.get()
            kb.open_cycle(request.cycle_id, request.trigger, request.started_at)
            holder = None
            if request.lease_until is not None:
                holder = kb.take_lease(request.cycle_id, request.lease_until)
            return CyclePlan(
                analyser=analyser_label(llm, self.settings.llm_environ(self.environ)),
                analyser_key=key,
                reanalyse_since=request.started_at - research.reanalyse_window,
                sample_source=research.sample_source,
                held_by=holder if holder != request.cycle_id else None,
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
        return await self.kb.run(
            lambda: self.kb.get().unanalysed_items(request.limit, request.analyser, request.reanalyse_since)
        )

    @activity.defn(name="count_unanalysed_items")
    async def count_unanalysed(self, request: PendingInput | None = None) -> int:
        analyser, since = (request.analyser, request.reanalyse_since) if request else (None, None)
        return await self.kb.run(lambda: self.kb.get().count_unanalysed(analyser, since))

    @activity.defn(name="record_analysis_failure")
    async def record_analysis_failure(self, failure: AnalysisFailure) -> bool:
        """Count the failure on the item (once per cycle and item); its cost is in the spending ledger,
        where the gateway recorded the call."""
        ref = f"{failure.cycle_id}/{failure.item_id}"
        return await self.kb.run(
            lambda: self.kb.get().record_analysis_failure(
                failure.item_id, failure.error, ref, failure.analyser
            )
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
        """Record the outcome and give the lease back (a no-op when another cycle holds it)."""

        def close() -> None:
            kb = self.kb.get()
            kb.close_cycle(outcome)
            kb.release_lease(outcome.cycle_id)

        await self.kb.run(close)

    @activity.defn(name="open_experiment")
    async def open_experiment(self, step: ExperimentStep) -> ExperimentRef:
        return await self.kb.run(
            lambda: self.kb.get().create_or_get_experiment(step.workflow_id, step.item_id)
        )

    @activity.defn(name="update_experiment")
    async def update_experiment(self, update: ExperimentUpdate) -> ExperimentRef:
        return await self.kb.run(lambda: self.kb.get().update_experiment(update))
