"""arXiv through the `arxiv` package: a fixed window re-read on every fetch, deduped by id and version.

As arxiv-sanity-lite does: results sorted by lastUpdatedDate, newest first, page after page until a page
reaches results older than the window start (the watermark less `arxiv_window`), so a paper that appears in
the API after newer ones (released from a hold, cross-listed later) is still read. Papers and versions the
knowledge base holds are dropped (`known`): only new papers and new versions come back. One request per
`arxiv_delay_seconds` (arXiv's terms of use), across fetches too: one client, one fetch at a time.
`arxiv_max_results` is a hard cap per fetch: reached before the window start, the log says so and the range
left unread, [window start, oldest update read], comes back in the result (`backfill_*`). The next fetch
reads what is newer than the watermark first, then, with what the cap leaves, that range
(`lastUpdatedDate:[A TO B]`), until it is covered; only then is the window behind the watermark re-read
again (it was read, and re-reading it would take the cap again). The watermark follows the newest read; the
stored range keeps what is below it. Late arrivals in the window while a range is pending are the price of
a cap too small for the window: the warning says which setting to raise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    hull,
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


@dataclass
class _Reading:
    read: int = 0
    newest: datetime | None = None
    oldest: datetime | None = None
    capped: bool = False  # the limit stopped the reading before its start or the results' end


def _minute(moment: datetime, up: bool = False) -> str:
    """arXiv's date filter has minutes (YYYYMMDDHHMM, both ends included): the bounds are widened to
    whole minutes, so what shares a minute with a bound is read again rather than missed."""
    floor = moment.replace(second=0, microsecond=0)
    if up and floor < moment:
        floor += timedelta(minutes=1)
    return floor.strftime("%Y%m%d%H%M")


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
        cap = settings.arxiv_max_results
        pending = request.backfill
        # A range left unread first: the window behind the watermark (read before, for late arrivals)
        # is read again once it is covered, or it would take the whole cap again.
        window = settings.arxiv_window if pending is None else timedelta(0)
        start = utc(request.since) - window if request.since is not None else None
        latest: dict[str, ItemIn] = {}  # by id: its latest version read (a paper may move between pages)
        with self._lock:
            if self._client is None:
                self._client = _ArxivClient(settings)
            part = self._read(query, start, cap, latest)
            # Without a window there is no range to come back to: the newest `cap`, as asked.
            capped = start is not None and part.capped
            gap = (start, part.oldest) if capped and start is not None and part.oldest else None
            backfill_read, backfill_capped = 0, False
            if pending is not None and not capped and part.read < cap:
                # What the cap leaves goes to the range an earlier capped fetch did not reach.
                after, before = pending
                bounded = f"({query}) AND lastUpdatedDate:[{_minute(after)} TO {_minute(before, up=True)}]"
                rest = self._read(bounded, after, cap - part.read, latest, read_from=before)
                backfill_read, backfill_capped = rest.read, rest.capped
                pending = (after, rest.oldest or before) if rest.capped else None
        left = hull(gap, pending)
        read = part.read + backfill_read
        items = self._unknown(list(latest.values()))
        if capped:
            log.warning(
                "arXiv cap reached before the window was covered: the rest is read by the next fetches; "
                f"raise {SETTINGS}ARXIV_MAX_RESULTS",
                source=ARXIV,
                cap=cap,
                read_down_to=part.oldest,
                window_start=start,
            )
        log.info(
            "research source fetched",
            source=ARXIV,
            read=read,
            items=len(items),
            window_start=start,
            newest=part.newest,
            backfill_read=backfill_read,
            left_unread=left,
        )
        return FetchResult(
            items=items,
            source=ARXIV,
            fetched=len(items),
            newest=part.newest,  # what is older and unread is in the backfill range
            read=read,
            capped=capped or backfill_capped,
            backfill_after=left[0] if left else None,
            backfill_before=left[1] if left else None,
        )

    def _read(
        self,
        query: str,
        start: datetime | None,
        limit: int,
        latest: dict[str, ItemIn],
        read_from: datetime | None = None,
    ) -> _Reading:
        """Newest first, until a result older than `start`, the end of the results or `limit` results.
        Results from `read_from` on (a backfill's upper minute: read by an earlier fetch) do not count:
        however many share the cursor's minute, the reading gets past it."""
        assert self._client is not None
        search = arxiv.Search(
            query=query,
            max_results=None,  # the limit is ours (uncounted results); pages stay `arxiv_page_size`
            # By last update, not submission: a new version (v2) of an older paper comes back too.
            sort_by=arxiv.SortCriterion.LastUpdatedDate,
            sort_order=arxiv.SortOrder.Descending,
        )
        reading = _Reading()
        for result in self._client.results(search):
            updated = utc(result.updated or result.published)
            if start is not None and updated < start:
                return reading  # newest first: the window is covered
            item = _paper(result)
            if item.source_id not in latest or latest[item.source_id].version < item.version:
                latest[item.source_id] = item
            if read_from is not None and updated >= read_from:
                continue
            reading.read += 1
            reading.newest = updated if reading.newest is None else max(reading.newest, updated)
            reading.oldest = updated
            if reading.read >= limit:
                reading.capped = True  # the results may go on: not known to be covered
                return reading
        return reading

    def _unknown(self, items: list[ItemIn]) -> list[ItemIn]:
        """The items whose id and version the knowledge base does not hold yet (new papers, new versions)."""
        if self.known is None or not items:
            return items
        known = self.known(ARXIV, [f"{item.source_id}v{item.version}" for item in items])
        return [item for item in items if f"{item.source_id}v{item.version}" not in known]
