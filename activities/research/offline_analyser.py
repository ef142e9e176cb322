"""The offline analyser as the research cycle runs it: the `relevance-scorer` agent's active version (the
cold start), corrected by what people's decisions taught (autarky/research/learning.py).

`offline_model_label` names the analyser an offline analysis is stored under: ``offline-bm25-v1``, then
``@<commit>`` once self-modification promoted a version, then ``+lr<n>-<digest>`` once people have judged
items both ways. When it changes (a promoted version, a new or changed decision), recent items are
analysed again. The model is refitted lazily: only when the decisions' signature (counts and latest
times of ratings and decided experiments) changed.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import structlog

from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.research.learning import ColdScorer, Decision, LearningScorer, learned_label
from autarky.research.relevance import MODEL

log = structlog.get_logger(__name__)
_KEEP = 4  # fitted scorers kept by label: an analysis looks its scorer up by the label it is stored under


def base_label(version: str | None) -> str:
    """The cold start's name: the shipped model, or the promoted version of the relevance scorer."""
    return MODEL if version is None else f"{MODEL}@{version[:12]}"


def model_label(version: str | None, decisions: list[Decision]) -> str:
    return learned_label(decisions, base_label(version))


def active_version(settings: AutarkySettings, kb: KnowledgeBaseHandle) -> str | None:
    """The commit of the relevance scorer's active version, None for the shipped one (blocking)."""
    from activities.selfmod.agent_store import AgentStore
    from activities.selfmod.versions import VersionStoreError, read_active_pointer
    from autarky.selfmod.agents import RELEVANCE_SCORER

    try:
        pointer = read_active_pointer(settings.data_dir / "agents", RELEVANCE_SCORER.name, AgentStore(kb))
    except VersionStoreError as error:  # as the analysis does: a damaged pointer means the shipped version
        log.warning("relevance_scorer_pointer_unreadable", error=str(error))
        return None
    return pointer.commit if pointer else None


async def offline_model_label(settings: AutarkySettings, kb: KnowledgeBaseHandle) -> str:
    """The model name offline analyses made now are stored under."""

    def read() -> str:
        from activities.storage.ratings import Ratings  # SQLAlchemy: loaded by the first cycle

        return model_label(active_version(settings, kb), Ratings(kb.get()).decisions())

    return await asyncio.to_thread(read)


class OfflineAnalyser:
    """One worker's learned scorers: fitted when the decisions or the cold scorer changed, kept by label."""

    def __init__(self, kb: KnowledgeBaseHandle) -> None:
        self.kb = kb
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._decisions: list[Decision] = []
        self._scorers: dict[str, LearningScorer] = {}

    def scorer(self, cold: ColdScorer, version: str | None) -> LearningScorer:
        """The scorer for analyses made now (blocking: reads the knowledge base, may fit)."""
        from activities.storage.ratings import Ratings  # SQLAlchemy: loaded by the first cycle

        ratings = Ratings(self.kb.get())
        with self._lock:
            signature = ratings.signature()
            if signature != self._signature:
                self._decisions, self._signature = ratings.decisions(), signature
            label = model_label(version, self._decisions)
            found = self._scorers.get(label)
            if found is not None and found.cold is cold:
                return found
            scorer = LearningScorer(cold, self._decisions, base=base_label(version))
            if scorer.learned is not None:
                log.info("offline_analyser_fitted", model=label, decisions=len(self._decisions))
            self._scorers[label] = scorer
            for old in list(self._scorers)[:-_KEEP]:
                del self._scorers[old]
            return scorer

    def named(self, label: str) -> LearningScorer | None:
        """The scorer fitted under `label`, if this worker still keeps it."""
        with self._lock:
            return self._scorers.get(label)
