"""What the research sources share: the fetch messages, payload bounds, text helpers, and the errors the
fetchers raise themselves (not configured, rate limited); sources.py classifies the libraries' failures."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from autarky.research.items import ItemIn
from autarky.research.settings import ResearchSettings

ARXIV = "arxiv"
GITHUB = "github"
SETTINGS = "AUTARKY_RESEARCH__"

# ApplicationError types.
SOURCE_UNAVAILABLE = "SourceUnavailable"  # retryable: network, 5xx, empty page
SOURCE_RATE_LIMITED = "SourceRateLimited"  # retryable after next_retry_delay
SOURCE_REJECTED = "SourceRejected"  # final: 4xx, bad token, bad query
NOT_CONFIGURED = "SourceNotConfigured"

# Payload bounds: a result may travel in a workflow history.
MAX_TITLE = 300
MAX_ABSTRACT = 1000
MAX_AUTHORS = 20
REQUEST_TIMEOUT = 30.0  # seconds per HTTP request
MAX_RATE_LIMIT_WAIT = timedelta(hours=1)
MIN_RETRY_DELAY = timedelta(seconds=1)

# Which of these (source, raw ids) the knowledge base holds already (KnowledgeBase.known_source_ids).
KnownIds = Callable[[str, Iterable[str]], set[str]]


class FetchInput(BaseModel):
    """Fetch what is newer than `since` (the last cycle's watermark) less the source's window; None: no
    watermark (the newest results, up to the source's cap). Then, with what the cap leaves, the range an
    earlier capped fetch did not reach, `[backfill_after, backfill_before]` (both None: none)."""

    since: datetime | None = None
    backfill_after: datetime | None = None
    backfill_before: datetime | None = None

    @property
    def backfill(self) -> Range | None:
        return unread_range(self.backfill_after, self.backfill_before)


Range = tuple[datetime, datetime]


def unread_range(after: datetime | None, before: datetime | None) -> Range | None:
    """The range a capped fetch left unread, in UTC; None when there is none."""
    return None if after is None or before is None else (utc(after), utc(before))


def hull(*ranges: Range | None) -> Range | None:
    """One range holding all the given ones: what is left unread, re-read at worst, never skipped."""
    present = [r for r in ranges if r is not None]
    if not present:
        return None
    return min(r[0] for r in present), max(r[1] for r in present)


class FetchResult(BaseModel):
    items: list[ItemIn]
    source: str
    fetched: int
    # The newest update (arXiv) or push (GitHub) read: the next watermark. None: leave the watermark as it
    # is (nothing found, or a cap stopped a fetch that had no window).
    newest: datetime | None = None
    # Results read from the API (the window's, known ones included), and whether a cap cut the reading.
    read: int = 0
    capped: bool = False
    # What a cap left unread, for the next fetch (FetchInput's backfill): None when all is covered.
    backfill_after: datetime | None = None
    backfill_before: datetime | None = None

    @property
    def backfill(self) -> Range | None:
        return unread_range(self.backfill_after, self.backfill_before)


def truncate(text: str | None, bound: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= bound else text[: bound - 1].rstrip() + "…"


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def host(url: str) -> str:
    return urlparse(url).netloc or url


def quote(term: str) -> str:
    term = term.replace('"', "").strip()
    return f'"{term}"' if " " in term else term


def not_configured(what: str, *settings: str) -> ApplicationError:
    names = " or ".join(f"{SETTINGS}{name}" for name in settings)
    return ApplicationError(f"no {what} configured; set {names}", type=NOT_CONFIGURED, non_retryable=True)


def rate_limited(
    settings: ResearchSettings, reset: float | None, retry_after: str | None
) -> ApplicationError:
    delay = delay_until(reset, retry_after)
    return ApplicationError(
        f"GitHub rate limit exhausted at {host(settings.github_base_url)}; retrying in "
        f"{int(delay.total_seconds())} s (when it resets)"
        + ("" if settings.github_token else f"; a token ({SETTINGS}GITHUB_TOKEN) raises the limit"),
        type=SOURCE_RATE_LIMITED,
        non_retryable=False,
        next_retry_delay=delay,
    )


def delay_until(reset: float | None, retry_after: str | None, now: float | None = None) -> timedelta:
    now = time.time() if now is None else now
    if retry_after is not None and retry_after.strip().isdigit():
        delay = timedelta(seconds=int(retry_after))
    elif reset:
        delay = timedelta(seconds=reset - now)
    else:
        delay = timedelta(minutes=1)
    return min(max(delay, MIN_RETRY_DELAY), MAX_RATE_LIMIT_WAIT)
