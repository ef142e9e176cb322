"""The research sources as activities: arXiv (arxiv_source.py) and GitHub (github_source.py).

Each fetch returns what it found since the caller's watermark (`FetchInput.since`) less a window of overlap:
arXiv only papers and versions the knowledge base does not hold yet, GitHub every repository created or
pushed in the window (an upsert refreshes them). The libraries never retry (Temporal does, with its backoff,
and sees every failure); failures are classified here: network errors, 5xx and rate limits are retryable (a
GitHub rate limit with `next_retry_delay` until its reset), 4xx are final with a message a person can act on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import arxiv
import requests
from github import GithubException, RateLimitExceededException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.research.arxiv_source import ArxivSource
from activities.research.github_source import GitHubSource
from activities.research.source_common import (
    ARXIV,
    GITHUB,
    REQUEST_TIMEOUT,
    SETTINGS,
    SOURCE_REJECTED,
    SOURCE_UNAVAILABLE,
    FetchInput,
    FetchResult,
    KnownIds,
    host,
    rate_limited,
)
from autarky.research.settings import ResearchSettings

__all__ = ["FetchInput", "FetchResult", "ResearchSources"]

P = ParamSpec("P")
T = TypeVar("T")


# ------------------------------------------------------------------------------------------- activities


class ResearchSources:
    """The arXiv and GitHub fetch activities. The GitHub token comes from the settings (the caller also
    reads GITHUB_TOKEN into them); it is never logged nor put in an error. `known` (the knowledge base's
    `known_source_ids`) keeps papers already stored out of arXiv's results; without it all are returned."""

    def __init__(self, settings: ResearchSettings, known: KnownIds | None = None) -> None:
        self.settings = settings
        self.arxiv = ArxivSource(settings, known)
        self.github = GitHubSource(settings)

    @activity.defn(name="fetch_arxiv")
    async def fetch_arxiv(self, request: FetchInput) -> FetchResult:
        return await self._in_thread(ARXIV, self.settings.arxiv_base_url, self.arxiv.fetch, request)

    @activity.defn(name="fetch_github")
    async def fetch_github(self, request: FetchInput) -> FetchResult:
        return await self._in_thread(GITHUB, self.settings.github_base_url, self.github.fetch, request)

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
            raise http_error(source, url, error.status, None) from error
        except arxiv.UnexpectedEmptyPageError as error:
            raise ApplicationError(
                f"{source}: {host(url)} returned an unexpectedly empty page; retrying",
                type=SOURCE_UNAVAILABLE,
            ) from error
        except RateLimitExceededException as error:
            raise rate_limited(
                self.settings, _reset(error.headers), _header(error.headers, "retry-after")
            ) from error
        except GithubException as error:
            if error.status == 429 or (
                error.status == 403 and _header(error.headers, "x-ratelimit-remaining") == "0"
            ):
                raise rate_limited(
                    self.settings, _reset(error.headers), _header(error.headers, "retry-after")
                ) from error
            raise http_error(source, url, error.status, error.message) from error
        except (requests.exceptions.RequestException, OSError) as error:  # refused, reset, timeouts, DNS
            raise ApplicationError(
                f"{source}: could not reach {host(url)} ({_network_reason(error)}); retrying",
                type=SOURCE_UNAVAILABLE,
            ) from error


def http_error(source: str, url: str, status: int, message: str | None) -> ApplicationError:
    where = host(url)
    detail = f": {message}" if message else ""
    if status == 429 or status >= 500 or status in (408,):
        return ApplicationError(
            f"{source}: {where} answered HTTP {status}{detail}; retrying",
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
        f"{source}: {where} answered HTTP {status}{detail}; {hint}",
        type=SOURCE_REJECTED,
        non_retryable=True,
    )


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


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
