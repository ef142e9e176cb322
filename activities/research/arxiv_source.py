"""arXiv through the `arxiv` package: a fixed window re-read on every fetch, deduped by id and version.

As arxiv-sanity-lite does: results sorted by lastUpdatedDate, newest first, page after page until a page
reaches results older than the window start (the watermark less `arxiv_window`), so a paper that appears in
the API after newer ones (released from a hold, cross-listed later) is still read. Papers and versions the
knowledge base holds are dropped (`known`): only new papers and new versions come back. One request per
`arxiv_delay_seconds` (arXiv's terms of use), across fetches too: one client, one fetch at a time.
`arxiv_max_results` is a hard cap: reached before the window start, the log says so and the watermark stays
(the next fetch reads the same window again rather than skip what this one did not reach).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import arxiv
import requests
import structlog

from activities.research.source_common import (
    ARXIV,
    MAX_ABSTRACT,
    MAX_AUTHORS,
    MAX_TITLE,
    REQUEST_TIMEOUT,
    SETTINGS,
    FetchInput,
    FetchResult,
    KnownIds,
    not_configured,
    quote,
    truncate,
    utc,
)
from autarky.research.items import ItemIn
from autarky.research.settings import ResearchSettings

log = structlog.get_logger(__name__)


class _ArxivSession(requests.Session):
    """The arxiv client sends its own User-Agent with every request; this one sends ours, with a timeout."""

    def __init__(self, user_agent: str, timeout: float) -> None:
        super().__init__()
        self.user_agent = user_agent
        self.timeout = timeout
        self.headers["User-Agent"] = user_agent

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        headers = {k: v for k, v in (kwargs.pop("headers", None) or {}).items() if k.lower() != "user-agent"}
        headers["User-Agent"] = self.user_agent
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, headers=headers, **kwargs)


class _ArxivClient(arxiv.Client):
    """`arxiv.Client` against a configurable API URL, without its own retries (Temporal retries)."""

    def __init__(self, settings: ResearchSettings) -> None:
        super().__init__(
            page_size=min(settings.arxiv_page_size, settings.arxiv_max_results),
            delay_seconds=settings.arxiv_delay_seconds,
            num_retries=0,
        )
        base = settings.arxiv_base_url.replace("{", "{{").replace("}", "}}")
        self.query_url_format = base + ("&{}" if "?" in base else "?{}")
        self._session = _ArxivSession(settings.user_agent, REQUEST_TIMEOUT)


def arxiv_query(settings: ResearchSettings) -> str:
    """Categories OR'd, AND keywords OR'd (either part left out when empty)."""
    parts = []
    if settings.arxiv_categories:
        parts.append(" OR ".join(f"cat:{c}" for c in settings.arxiv_categories))
    if settings.keywords:
        # An interest may carry its own keywords ("phrase: kw, kw", for the offline analyser): arXiv gets
        # the phrase.
        parts.append(" OR ".join(f"all:{quote(k.split(':', 1)[0])}" for k in settings.keywords))
    return " AND ".join(f"({p})" for p in parts)


def _paper(result: arxiv.Result) -> ItemIn:
    return ItemIn(
        kind="paper",
        source=ARXIV,
        source_id=result.get_short_id(),  # 2401.00001v2: ItemIn splits the version off
        title=truncate(result.title, MAX_TITLE) or result.get_short_id(),
        authors=[a.name for a in result.authors[:MAX_AUTHORS]],
        abstract=truncate(result.summary, MAX_ABSTRACT),
        url=result.entry_id,
    )


class ArxivSource:
    def __init__(self, settings: ResearchSettings, known: KnownIds | None = None) -> None:
        self.settings = settings
        self.known = known
        self._lock = threading.Lock()
        self._client: _ArxivClient | None = None

    def fetch(self, request: FetchInput) -> FetchResult:
        settings = self.settings
        query = arxiv_query(settings)
        if not query:
            raise not_configured("arXiv categories or keywords", "ARXIV_CATEGORIES", "KEYWORDS")
        start = utc(request.since) - settings.arxiv_window if request.since is not None else None
        search = arxiv.Search(
            query=query,
            max_results=settings.arxiv_max_results,
            # By last update, not submission: a new version (v2) of an older paper comes back too.
            sort_by=arxiv.SortCriterion.LastUpdatedDate,
            sort_order=arxiv.SortOrder.Descending,
        )
        latest: dict[str, ItemIn] = {}  # by id: its latest version read (a paper may move between pages)
        newest: datetime | None = None
        oldest: datetime | None = None
        read = 0
        reached_start = False
        with self._lock:
            if self._client is None:
                self._client = _ArxivClient(settings)
            for result in self._client.results(search):
                updated = utc(result.updated or result.published)
                if start is not None and updated < start:
                    reached_start = True
                    break  # newest first: the window is covered
                read += 1
                newest = updated if newest is None else max(newest, updated)
                oldest = updated
                item = _paper(result)
                if item.source_id not in latest or latest[item.source_id].version < item.version:
                    latest[item.source_id] = item
        capped = start is not None and not reached_start and read >= settings.arxiv_max_results
        items = self._unknown(list(latest.values()))
        if capped:
            log.warning(
                "arXiv cap reached before the window was covered: the watermark stays; raise "
                f"{SETTINGS}ARXIV_MAX_RESULTS",
                source=ARXIV,
                cap=settings.arxiv_max_results,
                read_down_to=oldest,
                window_start=start,
            )
        log.info(
            "research source fetched",
            source=ARXIV,
            read=read,
            items=len(items),
            window_start=start,
            newest=newest,
        )
        return FetchResult(
            items=items,
            source=ARXIV,
            fetched=len(items),
            newest=None if capped else newest,
            read=read,
            capped=capped,
        )

    def _unknown(self, items: list[ItemIn]) -> list[ItemIn]:
        """The items whose id and version the knowledge base does not hold yet (new papers, new versions)."""
        if self.known is None or not items:
            return items
        known = self.known(ARXIV, [f"{item.source_id}v{item.version}" for item in items])
        return [item for item in items if f"{item.source_id}v{item.version}" not in known]
