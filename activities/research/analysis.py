"""Analysis activities: score an item's relevance, plan an experiment; by an LLM, or offline.

With an LLM configured (`llm.*`, a key in the environment) the gateway asks it for structured output; without
one the offline analyser scores lexically and plans from a template, and every analysis says "offline".
Each activity reads its documents from the knowledge base and stores what it produced there, returning
only ids, scores and costs to the workflow. A retry records nothing twice (analyses are unique per item,
provider, model and prompt version).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from datetime import UTC, datetime, time
from typing import Any

import structlog
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models.llm import LlmGateway
from activities.models.routed import RoutedGateway
from activities.research.offline_analyser import OfflineAnalyser
from activities.research.sandboxed_scorer import SandboxedScorer
from activities.selfmod.versions import VersionStoreError, read_active_pointer
from activities.storage.handle import BAD_INPUT, KnowledgeBaseHandle
from activities.storage.ledger import SpendingLedger
from autarky.core.settings import AutarkySettings
from autarky.llm.errors import LLM_BUDGET_SPENT
from autarky.llm.settings import LlmSettings, resolve_provider
from autarky.llm.types import LlmRequest, LlmResult
from autarky.models.types import Variant
from autarky.research.items import OFFLINE_MODEL, AnalysisIn, ExperimentUpdate
from autarky.research.learning import LearningScorer
from autarky.research.relevance import (
    DEFAULT_INTERESTS,
    RelevanceParams,
    RelevanceScorer,
    offline_plan,
)
from autarky.research.types import AnalyseInput, AnalyseResult, ExperimentStep, PlanSummary
from autarky.selfmod.agents import AGENTS, RELEVANCE_SCORER, purposes, relevance_params
from autarky.selfmod.experiments import experiment_brief, match_purpose, plan_text

log = structlog.get_logger(__name__)

PROMPT_VERSION = "research-1"
ANALYST_SLOT = "research-analyst"
MAX_RATIONALE = 1000
MAX_TAGS = 8


def analyser_label(settings: LlmSettings, environ: Mapping[str, str] = os.environ) -> str:
    """'offline', or 'provider:model' of the LLM the gateway would ask."""
    choice = resolve_provider(settings, environ)
    return OFFLINE_MODEL if choice is None else f"{choice.kind}:{choice.model}"


class ItemAnalysis(BaseModel):
    """What the LLM answers about one item."""

    score: float = Field(ge=0, le=1, description="relevance to our interests: 0 unrelated, 1 must try")
    rationale: str = Field(min_length=1, max_length=MAX_RATIONALE, description="why, in two sentences")
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)


class ExperimentPlan(BaseModel):
    """What the LLM answers when asked how to try an item."""

    what_to_try: str = Field(min_length=1, max_length=400)
    steps: list[str] = Field(min_length=1, max_length=10)
    metric: str = Field(min_length=1, max_length=200)
    baseline: str = Field(min_length=1, max_length=300)
    success_criterion: str = Field(min_length=1, max_length=300)
    risks: list[str] = Field(default_factory=list, max_length=10)
    agent: str | None = Field(
        None,
        description="the evolvable agent of ours this would improve, if any: "
        + "; ".join(f"{name} ({purpose})" for name, purpose in purposes().items())
        + ". null when it improves none of them",
    )


SYSTEM = (
    "You review new research for Autarky, a platform that keeps an AI system running and improving by "
    "itself (autopilot, research, A/B tests of models, self-modification, scaling). Answer in the "
    "requested JSON only."
)


def _describe(item: dict[str, Any]) -> str:
    kind = "Paper" if item["kind"] == "paper" else "Repository"
    authors = ", ".join(item["authors"][:8])
    return (
        f"{kind}: {item['title']}\nBy: {authors}\n"
        f"Source: {item['source']} {item['source_id']} {item['url']}\nAbstract: {item['abstract']}"
    )


class AnalysisActivities:
    def __init__(
        self, settings: AutarkySettings, kb: KnowledgeBaseHandle, environ: Mapping[str, str] = os.environ
    ) -> None:
        self.settings = settings
        self.kb = kb
        # Every paid call is reserved, checked against the budgets and settled in the ledger.
        self.gateway = LlmGateway(settings.llm, settings.llm_environ(environ), ledger=SpendingLedger(kb))
        # Analyses are the calls of the model slot `research-analyst`: routed by its split, recorded.
        self.routed = RoutedGateway(settings.llm, settings.llm_environ(environ), kb, ANALYST_SLOT)
        self._scorer: Any = None
        self._scorer_version: str | None = None
        self.offline = OfflineAnalyser(kb)  # the cold scorer corrected by people's decisions

    def _offline_scorer(self) -> Any:
        """The offline scorer with the parameters of the `relevance-scorer` agent's active version
        (self-modification promotes and rolls back versions; the shipped ones until then). A version
        that changed the code runs it in the sandbox, never here (activities/research/sandboxed_scorer.py)."""
        from activities.selfmod.agent_store import AgentStore  # the versions every host shares (issue 25)

        store = AgentStore(self.kb)
        try:
            pointer = read_active_pointer(self.settings.data_dir / "agents", RELEVANCE_SCORER.name, store)
        except VersionStoreError as error:  # a damaged pointer must not stop research: shipped version
            log.warning("relevance_scorer_pointer_unreadable", error=str(error))
            pointer = None
        version = pointer.commit if pointer else None
        if self._scorer is None or self._scorer_version != version:
            interests = self.settings.research.keywords or DEFAULT_INTERESTS
            params = relevance_params(pointer.parameters) if pointer else None
            if pointer is not None and pointer.code_changed:  # the version's own code: in the sandbox
                self._scorer = SandboxedScorer(
                    self.settings.data_dir / "agents",
                    pointer.commit,
                    interests,
                    params or RelevanceParams(),
                    workdir_parent=self.settings.evolution.workdir_parent,
                    require_totals=self.settings.evolution.allow_unbounded_totals != "always",
                    store=store,
                )
            else:
                self._scorer = RelevanceScorer(interests, params)
            self._scorer_version = version
        return self._scorer

    async def _item(self, item_id: int) -> dict[str, Any]:
        item = await self.kb.run(lambda: self.kb.get().item(item_id))
        if item is None:
            raise ApplicationError(f"unknown item id {item_id}", type=BAD_INPUT, non_retryable=True)
        return item

    def _learning_scorer(self) -> LearningScorer:
        """The offline scorer of `_offline_scorer`, corrected by what people decided (blocking)."""
        cold = self._offline_scorer()
        return self.offline.scorer(cold, self._scorer_version)

    async def _analyser(self, item_id: int) -> tuple[Variant | None, str, str]:
        """The variant of the `research-analyst` slot this item is routed to (sticky by item: a retry goes
        to the same one) and the (provider, model) its analysis is stored under: the variant's model, not
        a dated snapshot the API may answer with, so a retry finds what an earlier attempt stored."""
        if self.gateway.offline:  # stored under the learned model's name (it changes as people decide)
            return None, OFFLINE_MODEL, (await asyncio.to_thread(self._learning_scorer)).model_name
        variant = await self.routed.route(str(item_id))
        return variant, variant.provider, variant.model

    @activity.defn(name="analyse_item")
    async def analyse_item(self, request: AnalyseInput) -> AnalyseResult:
        item = await self._item(request.item_id)
        variant, provider, model = await self._analyser(request.item_id)
        stored = await self.kb.run(
            lambda: self.kb.get().find_analysis(request.item_id, provider, model, PROMPT_VERSION)
        )
        if stored is not None:  # an earlier attempt stored it, then its result was lost: do not pay again
            return AnalyseResult(
                item_id=request.item_id,
                source=item["source"],
                source_id=item["source_id"],
                analysis_id=stored["id"],
                score=stored["score"],
                provider=provider,
                model=model,
                tokens_in=stored["tokens_in"],
                tokens_out=stored["tokens_out"],
                cost=stored["cost"],
            )
        if variant is None:
            scorer = self.offline.named(model) or await asyncio.to_thread(self._learning_scorer)
            relevance = await asyncio.to_thread(scorer.score, item["title"], item["abstract"])
            analysis = AnalysisIn(
                item_id=request.item_id,
                provider=provider,
                model=model,
                prompt_version=PROMPT_VERSION,
                score=relevance.score,
                rationale=relevance.rationale,
                tags=relevance.tags[:MAX_TAGS],
            )
        else:
            interests = "; ".join(self.settings.research.keywords)
            answer = await self.routed.complete(
                variant,
                str(request.item_id),
                LlmRequest(
                    system=SYSTEM,
                    prompt=(
                        f"Our interests: {interests}.\n\n{_describe(item)}\n\n"
                        "How relevant is this to our interests, and worth trying in our platform? Score 0 to "
                        "1 (above 0.7: we should try it), give a two-sentence rationale and up to 8 short "
                        "tags."
                    ),
                    max_tokens=self.settings.llm.analysis_max_tokens,
                    max_tokens_setting="AUTARKY_LLM__ANALYSIS_MAX_TOKENS",
                    budget_scope=request.cycle_id,  # the cycle's budget, besides the day's
                    purpose="research-analysis",
                ),
                ItemAnalysis,
            )
            analysis = AnalysisIn(
                item_id=request.item_id,
                provider=provider,
                model=model,
                prompt_version=PROMPT_VERSION,
                score=answer.output.score,
                rationale=answer.output.rationale,
                tags=answer.output.tags,
                tokens_in=answer.tokens_in,
                tokens_out=answer.tokens_out,
                cost=answer.cost_usd,
            )
        ref = await self.kb.run(lambda: self.kb.get().record_analysis(analysis))
        if not ref.created:  # a concurrent attempt stored it first; this call was paid for all the same
            log.warning("analysis stored twice", item=request.item_id, cost=analysis.cost)
        return AnalyseResult(
            item_id=request.item_id,
            source=item["source"],
            source_id=item["source_id"],
            analysis_id=ref.analysis_id,
            score=analysis.score,
            provider=analysis.provider,
            model=analysis.model,
            tokens_in=analysis.tokens_in,
            tokens_out=analysis.tokens_out,
            cost=analysis.cost,
        )

    async def _day_budget_spent(self) -> bool:
        midnight = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)
        spent = await self.kb.run(lambda: self.kb.get().spent_since(midnight))
        return spent >= self.settings.llm.budget_per_day_usd

    @activity.defn(name="plan_experiment")
    async def plan_experiment(self, step: ExperimentStep) -> PlanSummary:
        """An integration plan for the experiment's item, stored with the experiment (state 'planned').
        With today's LLM budget spent, the offline template (labelled so) instead of an LLM call."""
        item = await self._item(step.item_id)
        because = step.offline_because
        if because is None and not self.gateway.offline and await self._day_budget_spent():
            because = f"today's LLM budget (${self.settings.llm.budget_per_day_usd:.2f}) is spent"
        answer: LlmResult[ExperimentPlan] | None = None
        if not self.gateway.offline and because is None:
            try:
                answer = await self.gateway.complete(
                    LlmRequest(
                        system=SYSTEM,
                        prompt=(
                            f"{_describe(item)}\n\nPlan an experiment that tries this in our platform: what "
                            "to try, the steps, the metric, its baseline, the success criterion and the "
                            "risks. It will run in a sandbox and be benchmarked against the current version."
                        ),
                        max_tokens=self.settings.llm.plan_max_tokens,
                        max_tokens_setting="AUTARKY_LLM__PLAN_MAX_TOKENS",
                        purpose="experiment-plan",
                    ),
                    ExperimentPlan,
                )
            except ApplicationError as error:  # the ledger refused the call: the template instead
                if error.type != LLM_BUDGET_SPENT:
                    raise
                because = error.message
        if answer is None:
            relevance = await asyncio.to_thread(self._offline_scorer().score, item["title"], item["abstract"])
            plan = offline_plan(item["title"], relevance.interest, relevance.matched_terms)
            if because is not None:  # say why the LLM was not asked
                plan["label"] += f"; the LLM was not asked: {because}"
            _name_agent(plan, item, None)
            summary = PlanSummary(
                provider=OFFLINE_MODEL,
                model=relevance.model,
                offline=True,
                what=_bounded(plan["try"][0], 400),
                metric=_bounded(plan["metric"], 200),
                agent=plan["agent"],
                brief=_brief(item, plan, step.workflow_id),
            )
        else:
            plan = answer.output.model_dump() | {"provider": answer.provider, "model": answer.model}
            _name_agent(plan, item, answer.output.agent)
            summary = PlanSummary(
                provider=answer.provider,
                model=answer.model,
                offline=False,
                what=_bounded(answer.output.what_to_try, 400),
                metric=_bounded(answer.output.metric, 200),
                cost=answer.cost_usd,
                agent=plan["agent"],
                brief=_brief(item, plan, step.workflow_id),
            )
        update = ExperimentUpdate(workflow_id=step.workflow_id, state="planned", plan=plan, cost=summary.cost)

        # The plan's cost is in the spending ledger already: the gateway recorded the call.
        await self.kb.run(lambda: self.kb.get().update_experiment(update))
        log.info("experiment planned", experiment=step.workflow_id, by=f"{summary.provider}:{summary.model}")
        return summary


def _name_agent(plan: dict[str, Any], item: dict[str, Any], named: str | None) -> None:
    """Set the plan's `agent`: the one the LLM named, else the one whose declared purpose the item and
    plan match (autarky/selfmod/experiments.py); `agent_match` records the match, for people."""
    match = match_purpose(purposes(), item["title"], f"{item['abstract']}\n{plan_text(plan)}")
    plan["agent_match"] = match.record()
    plan["agent"] = named if named in AGENTS else match.agent


def _brief(item: dict[str, Any], plan: dict[str, Any], experiment: str) -> str:
    """What the named agent's evolution is told of this experiment, once approved (none without an agent)."""
    return experiment_brief(item, plan, experiment) if plan.get("agent") else ""


def _bounded(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
