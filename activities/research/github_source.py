"""GitHub through PyGithub: repositories created or pushed in the window, keyed by their numeric id.

Per topic and language two searches, `created:>=T` and `pushed:>=T` (T: the watermark less
`github_window`), sorted by last update: what is new comes first, not what is most starred. Each page is one
request, asked for with `get_page` (PaginatedList's `totalCount` and iteration past a cap fetch more); a
search reads until its results end or `github_max_results` (a hard cap: reached, the log says so and the
watermark stays). Searches keep within GitHub's search rate limit (30 a minute with a token, 10 without)
by its own headers: when none is left the next search waits for the reset (a minute at most), so a fetch
needing more pages than a minute allows still completes; a longer wait is a retryable error with
`next_retry_delay`. Items are keyed by the repository's numeric id (stable across renames); the full name
is the title, and a row stored under it by an older version is adopted (`former_source_ids`).
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime
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


def github_queries(settings: ResearchSettings, since: datetime | None) -> list[str]:
    """Per topic and language (GitHub ANDs repeated `topic:` qualifiers), one search for repositories
    created in the window and one for those pushed in it; without a watermark, one with no date."""
    topics = [f"topic:{t}" for t in settings.github_topics] or [""]
    languages = [f"language:{quote(lang)}" for lang in settings.github_languages] or [""]
    bases = [" ".join(filter(None, (t, lang))) for t in topics for lang in languages]
    bases = [base for base in bases if base]
    if since is None:
        return bases
    start = (utc(since) - settings.github_window).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [f"{base} {field}:>={start}" for base in bases for field in ("created", "pushed")]


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
        queries = github_queries(self.settings, request.since)
        if not queries:
            raise not_configured("GitHub topics or languages", "GITHUB_TOPICS", "GITHUB_LANGUAGES")
        found: dict[str, ItemIn] = {}
        pushes: list[datetime] = []
        read = pages = 0
        capped: list[str] = []
        with self._lock:
            gh = self._github()
            for query in queries:
                results: PaginatedList[Any] = gh.search_repositories(query, sort="updated", order="desc")
                query_read = 0
                for number in itertools.count():
                    self._pace(gh)
                    page = results.get_page(number)
                    pages += 1
                    repos = page[: self.settings.github_max_results - query_read]
                    query_read += len(repos)
                    for repo in repos:
                        item = _repository(repo)
                        found.setdefault(item.source_id, item)
                        if repo.pushed_at is not None:
                            pushes.append(utc(repo.pushed_at))
                    # get_page read the total from the answer: asking for it costs no request.
                    if len(page) < self.per_page or query_read >= results.totalCount:
                        break
                    if query_read >= self.settings.github_max_results:
                        capped.append(query)
                        break
                read += query_read
            remaining, limit = gh.requester.rate_limiting
        if capped:
            log.warning(
                "GitHub cap reached before a search's results ended: the watermark stays; raise "
                f"{SETTINGS}GITHUB_MAX_RESULTS",
                source=GITHUB,
                cap=self.settings.github_max_results,
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
        )
        return FetchResult(
            items=items,
            source=GITHUB,
            fetched=len(items),
            newest=max(pushes) if pushes and not capped else None,
            read=read,
            capped=bool(capped),
        )

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
