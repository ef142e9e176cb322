"""The gather activity: fetch one source from its watermark, store what it found, move the watermark.

Fetching and storing in one activity keeps documents out of the workflow history (only counts come back)
and makes a retry safe: upserts are idempotent and the watermark only moves forward, after the items are
stored. A failure is recorded on the source (the digest and `autarky status` show it) and raised again,
classified by the source activities, for Temporal's retry policy.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.research.types import GatherInput, GatherResult

if TYPE_CHECKING:
    from activities.research.sources import ResearchSources

log = structlog.get_logger(__name__)


class GatherActivities:
    def __init__(self, settings: AutarkySettings, kb: KnowledgeBaseHandle) -> None:
        self.settings = settings
        self.kb = kb
        self._sources: ResearchSources | None = None

    def sources(self) -> ResearchSources:
        if self._sources is None:
            from activities.research.sources import ResearchSources  # arxiv, PyGithub: on first use

            research = self.settings.research
            token = os.environ.get("GITHUB_TOKEN")
            if research.github_token is None and token:
                research = research.model_copy(update={"github_token": SecretStr(token)})
            self._sources = ResearchSources(research)
        return self._sources

    @activity.defn(name="gather_source")
    async def gather_source(self, request: GatherInput) -> GatherResult:
        from activities.research.sources import FetchInput

        sources = self.sources()
        fetch = sources.fetch_arxiv if request.source == "arxiv" else sources.fetch_github
        try:
            found = await fetch(FetchInput(since=request.since))
        except ApplicationError as error:
            message = str(error)
            await self.kb.run(lambda: self.kb.get().record_source_error(request.source, message))
            raise

        def store() -> GatherResult:
            kb = self.kb.get()
            refs = [kb.upsert_item(item) for item in found.items]
            kb.record_source_ok(request.source, found.newest)
            created = sum(ref.created for ref in refs)
            return GatherResult(
                source=request.source,
                fetched=found.fetched,
                new_items=created,
                updated_items=len(refs) - created,
                newest=found.newest,
            )

        result = await self.kb.run(store)
        log.info("research source gathered", cycle=request.cycle_id, **result.model_dump(mode="json"))
        return result
