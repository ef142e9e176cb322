"""POST a notification to a person's webhook (`notifications.webhook_url`), classified for Temporal.

Delivery is at least once: the notification is stored before it is POSTed, and a POST whose answer is
lost (a timeout, a worker killed after the receiver took it) is sent again by the retry. Every POST of one
notification carries the same key, in the body and in an ``Idempotency-Key`` header, so the receiver can
drop the repeat.

- 2xx: delivered;
- 408, 429, 5xx, no answer: raise a retryable ApplicationError (Temporal retries it), after the delay the
  receiver asked for in ``Retry-After`` when it gave one;
- any other answer (4xx: a wrong URL, a revoked token, a body it refuses): non-retryable, since the same
  POST would be refused again.

The URL usually carries a token, so messages name its scheme and host only.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from temporalio.exceptions import ApplicationError

from autarky.core.retry_after import retry_after_delay

RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_RETRY_AFTER = timedelta(hours=1)  # a receiver asking for longer is retried after an hour
WEBHOOK_REFUSED = "NotificationWebhookRefused"
WEBHOOK_UNAVAILABLE = "NotificationWebhookUnavailable"


def where(url: str) -> str:
    """The webhook's scheme and host: what messages may show of a URL that carries a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


async def post_notification(url: str, key: str, body: dict[str, Any], timeout: timedelta) -> int:
    """POST `body` (with `key`) as JSON to `url`; the HTTP status on success, else an ApplicationError."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ApplicationError(
            f"notifications.webhook_url must be an http(s) URL, not {scheme or 'a bare path'!r}",
            type=WEBHOOK_REFUSED,
            non_retryable=True,
        )
    data = json.dumps({**body, "key": key}, default=str).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "User-Agent": "autarky-notify",
        },
    )
    return await asyncio.to_thread(_send, request, url, key, timeout.total_seconds())


def _send(request: urllib.request.Request, url: str, key: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        status, headers = error.code, error.headers
        error.close()
    except (urllib.error.URLError, OSError) as error:  # refused, unreachable, DNS, timed out
        reason = getattr(error, "reason", error)
        raise ApplicationError(
            f"notification {key}: webhook {where(url)} did not answer ({reason}); retrying",
            type=WEBHOOK_UNAVAILABLE,
        ) from None  # the error's text may repeat the URL, token and all
    if status in RETRYABLE_STATUSES or status >= 500:
        delay = retry_after(headers.get("Retry-After"))
        asked = f", asked to wait {delay.total_seconds():g} s" if delay else ""
        raise ApplicationError(
            f"notification {key}: webhook {where(url)} answered HTTP {status}{asked}; retrying",
            type=WEBHOOK_UNAVAILABLE,
            next_retry_delay=delay,
        )
    raise ApplicationError(
        f"notification {key}: webhook {where(url)} refused it with HTTP {status}: check "
        "notifications.webhook_url (the notification is stored: `autarky notifications`)",
        type=WEBHOOK_REFUSED,
        non_retryable=True,
    )


def retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), at most MAX_RETRY_AFTER."""
    return retry_after_delay(value, now, MAX_RETRY_AFTER)
