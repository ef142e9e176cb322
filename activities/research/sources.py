"""The research sources: arXiv (through the `arxiv` package) and GitHub (through PyGithub), as activities.

Each fetch returns only what is newer than the caller's watermark (`FetchInput.since`), small enough for a
workflow history. The libraries never retry (Temporal does, with its backoff, and sees every failure);
failures are classified: network errors, 5xx and rate limits are retryable (a GitHub rate limit with
`next_retry_delay` until its reset), 4xx are final with a message a person can act on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlparse

import arxiv
import requests
import structlog
from github import Auth, Github, GithubException, RateLimitExceededException
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autarky.research.items import ItemIn
from autarky.research.settings import ResearchSettings

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

ARXIV = "arxiv"
GITHUB = "github"
SETTINGS = "AUTARKY_RESEARCH__"

# ApplicationError types.
SOURCE_UNAVAILABLE = "SourceUnavailable"  # retryable: network, 5xx, empty page
SOURCE_RATE_LIMITED = "SourceRateLimited"  # retryable after next_retry_delay
SOURCE_REJECTED = "SourceRejected"  # final: 4xx, bad token, bad query
NOT_CONFIGURED = "SourceNotConfigured"

# Payload bounds: a result travels in the workflow history.
MAX_TITLE = 300
MAX_ABSTRACT = 1000
MAX_AUTHORS = 20
REQUEST_TIMEOUT = 30.0  # seconds per HTTP request
MAX_RATE_LIMIT_WAIT = timedelta(hours=1)
MIN_RETRY_DELAY = timedelta(seconds=1)


class FetchInput(BaseModel):
    """Fetch what is newer than `since` (the last cycle's watermark); None: no watermark."""

    since: datetime | None = None


class FetchResult(BaseModel):
    items: list[ItemIn]
    source: str
    fetched: int
    # The newest publication (arXiv) or push (GitHub) seen: the next watermark; None when nothing was found.
    newest: datetime | None = None


def _truncate(text: str | None, bound: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= bound else text[: bound - 1].rstrip() + "…"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _host(url: str) -> str:
    return urlparse(url).netloc or url


def _quote(term: str) -> str:
    term = term.replace('"', "").strip()
    return f'"{term}"' if " " in term else term


# ------------------------------------------------------------------------------------------------ arXiv


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
        parts.append(" OR ".join(f"all:{_quote(k.split(':', 1)[0])}" for k in settings.keywords))
    return " AND ".join(f"({p})" for p in parts)


def _paper(result: arxiv.Result) -> ItemIn:
    return ItemIn(
        kind="paper",
        source=ARXIV,
        source_id=result.get_short_id(),  # 2401.00001v2: ItemIn splits the version off
        title=_truncate(result.title, MAX_TITLE) or result.get_short_id(),
        authors=[a.name for a in result.authors[:MAX_AUTHORS]],
        abstract=_truncate(result.summary, MAX_ABSTRACT),
        url=result.entry_id,
    )


# ----------------------------------------------------------------------------------------------- GitHub


def github_queries(settings: ResearchSettings, since: datetime | None) -> list[str]:
    """One search per topic and language (GitHub ANDs repeated `topic:` qualifiers)."""
    pushed = f" pushed:>={_utc(since).date().isoformat()}" if since is not None else ""
    topics = [f"topic:{t}" for t in settings.github_topics] or [""]
    languages = [f"language:{_quote(lang)}" for lang in settings.github_languages] or [""]
    queries = [" ".join(filter(None, (t, lang))) + pushed for t in topics for lang in languages]
    return [q.strip() for q in queries if q.strip()]


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _delay_until(reset: float | None, retry_after: str | None, now: float | None = None) -> timedelta:
    now = time.time() if now is None else now
    if retry_after is not None and retry_after.strip().isdigit():
        delay = timedelta(seconds=int(retry_after))
    elif reset:
        delay = timedelta(seconds=reset - now)
    else:
        delay = timedelta(minutes=1)
    return min(max(delay, MIN_RETRY_DELAY), MAX_RATE_LIMIT_WAIT)


def _repository(repo: Any) -> ItemIn:
    full_name = repo.full_name
    return ItemIn(
        kind="repository",
        source=GITHUB,
        source_id=full_name,
        title=_truncate(full_name, MAX_TITLE),
        authors=[repo.owner.login] if repo.owner is not None else [],
        abstract=_truncate(repo.description, MAX_ABSTRACT),
        url=repo.html_url or "",
    )


# ------------------------------------------------------------------------------------------- activities


class ResearchSources:
    """The arXiv and GitHub fetch activities. The GitHub token comes from the settings (the caller also
    reads GITHUB_TOKEN into them); it is never logged nor put in an error."""

    def __init__(self, settings: ResearchSettings) -> None:
        self.settings = settings
        # One arXiv client, one fetch at a time: its delay between requests holds across fetches too.
        self._arxiv_lock = threading.Lock()
        self._arxiv: _ArxivClient | None = None

    @activity.defn(name="fetch_arxiv")
    async def fetch_arxiv(self, request: FetchInput) -> FetchResult:
        return await self._in_thread(ARXIV, self.settings.arxiv_base_url, self._fetch_arxiv, request)

    @activity.defn(name="fetch_github")
    async def fetch_github(self, request: FetchInput) -> FetchResult:
        return await self._in_thread(GITHUB, self.settings.github_base_url, self._fetch_github, request)

    # ---------------------------------------------------------------------------------------------- arXiv

    def _fetch_arxiv(self, request: FetchInput) -> FetchResult:
        settings = self.settings
        query = arxiv_query(settings)
        if not query:
            raise ApplicationError(
                f"no arXiv categories or keywords configured; set {SETTINGS}ARXIV_CATEGORIES or "
                f"{SETTINGS}KEYWORDS",
                type=NOT_CONFIGURED,
                non_retryable=True,
            )
        since = _utc(request.since) if request.since is not None else None
        search = arxiv.Search(
            query=query,
            max_results=settings.arxiv_max_results,
            # By last update, not submission: a new version (v2) of an older paper comes back too.
            sort_by=arxiv.SortCriterion.LastUpdatedDate,
            sort_order=arxiv.SortOrder.Descending,
        )
        items: list[ItemIn] = []
        newest: datetime | None = None
        with self._arxiv_lock:
            if self._arxiv is None:
                self._arxiv = _ArxivClient(settings)
            for result in self._arxiv.results(search):
                published = _utc(result.updated or result.published)
                if since is not None and published <= since:
                    break  # newest first: everything from here on was seen by an earlier cycle
                items.append(_paper(result))
                newest = published if newest is None else max(newest, published)
        log.info("research source fetched", source=ARXIV, items=len(items), since=since, newest=newest)
        return FetchResult(items=items, source=ARXIV, fetched=len(items), newest=newest)

    # --------------------------------------------------------------------------------------------- GitHub

    def _github(self) -> Github:
        settings = self.settings
        token = settings.github_token.get_secret_value() if settings.github_token else None
        return Github(
            base_url=settings.github_base_url.rstrip("/"),
            auth=Auth.Token(token) if token else None,
            user_agent=settings.user_agent,
            timeout=int(REQUEST_TIMEOUT),
            per_page=min(100, settings.github_max_results),
            retry=None,
            seconds_between_requests=None,
        )

    def _fetch_github(self, request: FetchInput) -> FetchResult:
        settings = self.settings
        queries = github_queries(settings, request.since)
        if not queries:
            raise ApplicationError(
                f"no GitHub topics or languages configured; set {SETTINGS}GITHUB_TOPICS or "
                f"{SETTINGS}GITHUB_LANGUAGES",
                type=NOT_CONFIGURED,
                non_retryable=True,
            )
        gh = self._github()
        found: dict[str, tuple[int, datetime | None, ItemIn]] = {}
        try:
            for query in queries:
                self._check_quota(gh)
                for count, repo in enumerate(gh.search_repositories(query, sort="stars", order="desc")):
                    if count >= settings.github_max_results:
                        break
                    item = _repository(repo)
                    pushed = _utc(repo.pushed_at) if repo.pushed_at is not None else None
                    found.setdefault(item.source_id, (repo.stargazers_count or 0, pushed, item))
        finally:
            gh.close()
        ranked = sorted(found.values(), key=lambda entry: entry[0], reverse=True)[
            : settings.github_max_results
        ]
        items = [item for _, _, item in ranked]
        pushes = [pushed for _, pushed, _ in ranked if pushed is not None]
        newest = max(pushes) if pushes else None
        remaining, limit = gh.requester.rate_limiting
        log.info(
            "research source fetched",
            source=GITHUB,
            items=len(items),
            queries=len(queries),
            rate_remaining=remaining,
            rate_limit=limit,
        )
        return FetchResult(items=items, source=GITHUB, fetched=len(items), newest=newest)

    def _check_quota(self, gh: Github) -> None:
        """Before another search: if the last response said the quota is spent, wait for its reset."""
        remaining, limit = gh.requester.rate_limiting  # (-1, -1) before the first response
        reset = gh.requester.rate_limiting_resettime
        if limit >= 0 and remaining <= 0 and reset > time.time():
            raise self._rate_limited(reset, None)

    def _rate_limited(self, reset: float | None, retry_after: str | None) -> ApplicationError:
        delay = _delay_until(reset, retry_after)
        return ApplicationError(
            f"GitHub rate limit exhausted at {_host(self.settings.github_base_url)}; retrying in "
            f"{int(delay.total_seconds())} s (when it resets)"
            + ("" if self.settings.github_token else f"; a token ({SETTINGS}GITHUB_TOKEN) raises the limit"),
            type=SOURCE_RATE_LIMITED,
            non_retryable=False,
            next_retry_delay=delay,
        )

    # --------------------------------------------------------------------------------------------- errors

    async def _in_thread(
        self, source: str, url: str, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run the blocking library code off the event loop; its failures become retryable or final."""
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except ApplicationError:
            raise
        except arxiv.HTTPError as error:
            raise self._http_error(source, url, error.status, None) from error
        except arxiv.UnexpectedEmptyPageError as error:
            raise ApplicationError(
                f"{source}: {_host(url)} returned an unexpectedly empty page; retrying",
                type=SOURCE_UNAVAILABLE,
            ) from error
        except RateLimitExceededException as error:
            raise self._rate_limited(_reset(error.headers), _header(error.headers, "retry-after")) from error
        except GithubException as error:
            if error.status == 429 or (
                error.status == 403 and _header(error.headers, "x-ratelimit-remaining") == "0"
            ):
                raise self._rate_limited(
                    _reset(error.headers), _header(error.headers, "retry-after")
                ) from error
            raise self._http_error(source, url, error.status, error.message) from error
        except (requests.exceptions.RequestException, OSError) as error:  # refused, reset, timeouts, DNS
            raise ApplicationError(
                f"{source}: could not reach {_host(url)} ({_network_reason(error)}); retrying",
                type=SOURCE_UNAVAILABLE,
            ) from error

    def _http_error(self, source: str, url: str, status: int, message: str | None) -> ApplicationError:
        host = _host(url)
        detail = f": {message}" if message else ""
        if status == 429 or status >= 500 or status in (408,):
            return ApplicationError(
                f"{source}: {host} answered HTTP {status}{detail}; retrying",
                type=SOURCE_UNAVAILABLE,
            )
        if status == 401:
            hint = (
                f"the GitHub token is bad or expired: replace {SETTINGS}GITHUB_TOKEN (or GITHUB_TOKEN), "
                "or unset it to search anonymously"
                if source == GITHUB
                else "the API refused the request as unauthenticated"
            )
        elif status == 403:
            hint = (
                "access denied: check the token's permissions, or that the base URL "
                f"({SETTINGS}{source.upper()}_BASE_URL) is the API"
            )
        elif status == 404:
            hint = f"not found: check {SETTINGS}{source.upper()}_BASE_URL ({url})"
        elif status in (400, 422):
            hint = "the query was rejected: check " + (
                f"{SETTINGS}GITHUB_TOPICS and {SETTINGS}GITHUB_LANGUAGES"
                if source == GITHUB
                else f"{SETTINGS}ARXIV_CATEGORIES and {SETTINGS}KEYWORDS"
            )
        else:
            hint = "the request was refused"
        return ApplicationError(
            f"{source}: {host} answered HTTP {status}{detail}; {hint}",
            type=SOURCE_REJECTED,
            non_retryable=True,
        )


def _network_reason(error: BaseException) -> str:
    """Why a request did not get through, in a few words (requests' own message repeats the whole URL)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:  # the chain: requests → urllib3 → socket
        seen.append(current)
        current = (
            current.__cause__
            or current.__context__
            or next((arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)), None)
        )
    names = {type(e).__name__ for e in seen}
    if names & {"gaierror", "NameResolutionError"}:
        return "name resolution failed: no network, or a wrong host"
    if names & {"ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutError", "socket.timeout"}:
        return f"timed out after {REQUEST_TIMEOUT:.0f} s"
    if names & {"ConnectionRefusedError", "NewConnectionError"}:
        return "connection refused"
    if "SSLError" in names:
        return "TLS failed"
    last = seen[-1]
    text = str(last)
    return f"{type(last).__name__}: {text[:120]}" if text else type(last).__name__


def _reset(headers: dict[str, Any] | None) -> float | None:
    value = _header(headers, "x-ratelimit-reset")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
