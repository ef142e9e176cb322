"""The gather activity: fetch one source from its watermark, store what it found, move the watermark.

Fetching and storing in one activity keeps documents out of the workflow history (only counts come back)
and makes a retry safe: upserts are idempotent and the watermark only moves forward, after the items are
stored. A fetch a cap cut short leaves a range unread: it is stored with the watermark and handed to the
next fetch, which reads it with what its cap leaves, until it is covered. arXiv's fetch asks the knowledge
base which papers and versions it holds, so only new ones come back. A failure is recorded on the source
(the digest and `autarky status` show it) and raised again, classified by the source activities, for
Temporal's retry policy. The "sample" source stores the shipped synthetic items (sample_source.py): no
network, nothing to fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.research.sample_source import sample_items
from activities.research.source_common import ARXIV, FetchInput, FetchResult
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.research.types import SAMPLE, GatherInput, GatherResult

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
            self._sources = ResearchSources(research, known=self._known)
        return self._sources

    def _known(self, source: str, ids: Iterable[str]) -> set[str]:
        return self.kb.get().known_source_ids(source, ids)  # in the fetch's thread: a blocking call is fine

    async def _fetch(self, request: GatherInput) -> FetchResult:
        if request.source == SAMPLE:
            items = sample_items()
            return FetchResult(items=items, source=SAMPLE, fetched=len(items), read=len(items))
        sources = self.sources()
        fetch = sources.fetch_arxiv if request.source == ARXIV else sources.fetch_github
        # The range an earlier capped fetch left unread is the knowledge base's, not the workflow's.
        backfill = await self.kb.run(lambda: self.kb.get().backfill(request.source))
        after, before = backfill or (None, None)
        return await fetch(FetchInput(since=request.since, backfill_after=after, backfill_before=before))

    @activity.defn(name="gather_source")
    async def gather_source(self, request: GatherInput) -> GatherResult:
        try:
            found = await self._fetch(request)
        except ApplicationError as error:
            message = str(error)
            await self.kb.run(lambda: self.kb.get().record_source_error(request.source, message))
            raise

        def store() -> GatherResult:
            kb = self.kb.get()
            refs = [kb.upsert_item(item) for item in found.items]
            kb.record_source_ok(request.source, found.newest, found.backfill)
            created = sum(ref.created for ref in refs)
            return GatherResult(
                source=request.source,
                fetched=found.fetched,
                new_items=created,
                updated_items=len(refs) - created,
                newest=found.newest,
            )

        result = await self.kb.run(store)
        log.info(
            "research source gathered",
            cycle=request.cycle_id,
            read=found.read,
            capped=found.capped,
            **result.model_dump(mode="json"),
        )
        return result
