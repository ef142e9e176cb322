"""The wait an HTTP `Retry-After` header asks for (pure code): every client of a rate-limited service reads
it the same way, and the activity hands it to Temporal as the next retry's delay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


def retry_after_delay(
    value: str | None, now: datetime | None = None, cap: timedelta | None = None
) -> timedelta | None:
    """`value` in seconds or as an HTTP date; None when absent, unreadable or not in the future (the
    retry policy's backoff applies then). At most `cap` when given."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        delay = timedelta(seconds=float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - (now or datetime.now(UTC))
    if delay <= timedelta(0):
        return None
    return min(delay, cap) if cap is not None else delay
