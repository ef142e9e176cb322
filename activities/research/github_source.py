"""GitHub through PyGithub: repositories created or pushed in the window, keyed by their numeric id.

Per topic and language two searches, `created:>=T` and `pushed:>=T` (T: the watermark less
`github_window`), sorted by last update: what is new comes first, not what is most starred. Each page is one
request, asked for with `get_page` (PaginatedList's `totalCount` and iteration past a cap fetch more); a
search reads until its results end or `github_max_results` (a hard cap: reached, the log says so and the
range left unread, [window start, oldest update read], comes back in the result, `backfill_*`; the next
fetch searches what is newer than the watermark, then that range with `created:A..B` / `pushed:A..B` with
what the cap leaves, until it is covered; only then is the window behind the watermark searched again). The
cursor is the oldest `updated_at` read (the sort key): a repository is created, and we take it pushed, no
later than it is updated, so what was not read lies below it in both searches. Searches keep within
GitHub's search rate limit (30 a minute with a token, 10 without) by its own headers: when none is left the
next search waits for the reset (a minute at most), so a fetch needing more pages than a minute allows still
completes; a longer wait is a retryable error with `next_retry_delay`. Items are keyed by the repository's
numeric id (stable across renames); the full name is the title, and a row stored under it by an older
version is adopted (`former_source_ids`).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from github import Auth, Github
from github.PaginatedList import PaginatedList

from activities.research.source_common import (
    GITHUB,
    MAX_ABSTRACT,
    MAX_TITLE,
    REQUEST_TIMEOUT,
    SETTINGS,
    FetchInput,
    FetchResult,
    Range,
    hull,
    not_configured,
    quote,
    rate_limited,
    truncate,
    utc,
)
from autarky.research.items import ItemIn
from autarky.research.settings import ResearchSettings

log = structlog.get_logger(__name__)

MAX_PACE_WAIT = 65.0  # seconds: the search limit resets every minute; longer is another limit's reset
MAX_PER_PAGE = 100  # GitHub's bound for search pages
RESET_MARGIN = 0.5  # seconds after the announced reset: clocks differ a little


def github_queries(
    settings: ResearchSettings, since: datetime | None, window: timedelta | None = None
) -> list[str]:
    """Per topic and language (GitHub ANDs repeated `topic:` qualifiers), one search for repositories
    created in the window (`window`, default `github_window`) and one for those pushed in it; without a
    watermark, one with no date."""
    topics = [f"topic:{t}" for t in settings.github_topics] or [""]
    languages = [f"language:{quote(lang)}" for lang in settings.github_languages] or [""]
    bases = [" ".join(filter(None, (t, lang))) for t in topics for lang in languages]
    bases = [base for base in bases if base]
    if since is None:
        return bases
    start = _iso(utc(since) - (settings.github_window if window is None else window))
    return [f"{base} {field}:>={start}" for base in bases for field in ("created", "pushed")]


@dataclass
class _Reading:
    read: int = 0
    pages: int = 0
    oldest: datetime | None = None  # the oldest update read
    capped: bool = False  # the limit stopped the search before its results ended


def _iso(moment: datetime) -> str:
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _repository(repo: Any) -> ItemIn:
    return ItemIn(
        kind="repository",
        source=GITHUB,
        source_id=str(repo.id),
        title=truncate(repo.full_name, MAX_TITLE),
        authors=[repo.owner.login] if repo.owner is not None else [],
        abstract=truncate(repo.description, MAX_ABSTRACT),
        url=repo.html_url or "",
        former_source_ids=[repo.full_name],
    )


class GitHubSource:
    """One PyGithub client for the process (the rate-limit state it read carries over), one fetch at a
    time."""

    def __init__(self, settings: ResearchSettings) -> None:
        self.settings = settings
        self.per_page = min(MAX_PER_PAGE, settings.github_max_results)
        self._lock = threading.Lock()
        self._client: Github | None = None

    def _github(self) -> Github:
        if self._client is None:
            settings = self.settings
            token = settings.github_token.get_secret_value() if settings.github_token else None
            self._client = Github(
                base_url=settings.github_base_url.rstrip("/"),
                auth=Auth.Token(token) if token else None,
                user_agent=settings.user_agent,
                timeout=int(REQUEST_TIMEOUT),
                per_page=self.per_page,
                retry=None,
                seconds_between_requests=None,
            )
        return self._client

    def fetch(self, request: FetchInput) -> FetchResult:
        settings = self.settings
        pending = request.backfill
        # A range left unread first: the window behind the watermark (read before, for late arrivals)
        # is read again once it is covered, or it would take the whole cap again.
        window = settings.github_window if pending is None else timedelta(0)
        queries = github_queries(settings, request.since, window)
        if not queries:
            raise not_configured("GitHub topics or languages", "GITHUB_TOPICS", "GITHUB_LANGUAGES")
        start = utc(request.since) - window if request.since is not None else None
        cap = settings.github_max_results
        found: dict[str, ItemIn] = {}
        pushes: list[datetime] = []
        read = pages = 0
        capped: list[str] = []
        left: list[Range | None] = []  # per query, what it left unread
        with self._lock:
            gh = self._github()
            for query in queries:
                part = self._search(gh, query, cap, found, pushes)
                pages += part.pages
                read += part.read
                if part.capped:
                    capped.append(query)
                    # Without a window there is no range to come back to: the newest `cap`, as asked.
                    left.append((start, part.oldest) if start is not None and part.oldest else None)
                    continue
                if pending is None or start is None or part.read >= cap:
                    left.append(pending)  # no cap left (or no dated search): the range waits
                    continue
                # What the cap leaves goes to the range an earlier capped fetch did not reach.
                after, before = pending
                base, dated = query.rsplit(" ", 1)  # "... created:>=T" or "... pushed:>=T"
                bounded = f"{base} {dated.split(':')[0]}:{_iso(after)}..{_iso(before)}"
                rest = self._search(gh, bounded, cap - part.read, found, None, read_from=before)
                pages += rest.pages
                read += rest.read
                left.append((after, rest.oldest or before) if rest.capped else None)
            remaining, limit = gh.requester.rate_limiting
        unread = hull(*left)
        if capped:
            log.warning(
                "GitHub cap reached before a search's results ended: the rest is read by the next fetches; "
                f"raise {SETTINGS}GITHUB_MAX_RESULTS",
                source=GITHUB,
                cap=cap,
                queries=capped,
            )
        items = list(found.values())
        log.info(
            "research source fetched",
            source=GITHUB,
            read=read,
            items=len(items),
            queries=len(queries),
            requests=pages,
            rate_remaining=remaining,
            rate_limit=limit,
            left_unread=unread,
        )
        return FetchResult(
            items=items,
            source=GITHUB,
            fetched=len(items),
            # Capped without a window nothing marks what was skipped: the watermark stays.
            newest=max(pushes) if pushes and not (capped and start is None) else None,
            read=read,
            capped=bool(capped) or unread is not None,
            backfill_after=unread[0] if unread else None,
            backfill_before=unread[1] if unread else None,
        )

    def _search(
        self,
        gh: Github,
        query: str,
        limit: int,
        found: dict[str, ItemIn],
        pushes: list[datetime] | None,
        read_from: datetime | None = None,
    ) -> _Reading:
        """One search, most recently updated first, a page (one request) at a time, up to `limit` results.
        Results updated from `read_from` on (a backfill's cursor: read by an earlier fetch) do not count:
        however many share the cursor, the reading gets past it."""
        results: PaginatedList[Any] = gh.search_repositories(query, sort="updated", order="desc")
        reading = _Reading()
        for number in itertools.count():
            self._pace(gh)
            page = results.get_page(number)
            reading.pages += 1
            for repo in page:
                # The sort key: what is unread was updated no later. A repository is created, and (we
                # take it) pushed, no later than it is updated, so the cursor bounds both searches.
                moment = repo.updated_at or repo.pushed_at
                moment = utc(moment) if moment is not None else None
                if read_from is None or moment is None or moment < read_from:
                    if reading.read >= limit:
                        reading.capped = True  # more on this page than the cap: not known to be covered
                        return reading
                    reading.read += 1
                    if moment is not None:
                        reading.oldest = min(moment, reading.oldest or moment)
                item = _repository(repo)
                found.setdefault(item.source_id, item)
                if repo.pushed_at is not None and pushes is not None:
                    pushes.append(utc(repo.pushed_at))
            # get_page read the total from the answer: asking for it costs no request.
            if len(page) < self.per_page or reading.pages * self.per_page >= results.totalCount:
                return reading
            if reading.read >= limit:
                reading.capped = True
                return reading

    def _pace(self, gh: Github) -> None:
        """Before a search: if the last answer said the quota is spent, wait for its reset (a minute at
        most), or give up until then with a retryable error."""
        remaining, limit = gh.requester.rate_limiting  # (-1, -1) before the first answer
        reset = gh.requester.rate_limiting_resettime
        wait = reset - time.time()
        if limit < 0 or remaining > 0 or wait <= 0:
            return
        if wait > MAX_PACE_WAIT:
            raise rate_limited(self.settings, reset, None)
        log.info("GitHub search quota spent: waiting for its reset", source=GITHUB, seconds=round(wait, 1))
        time.sleep(wait + RESET_MARGIN)
