"""The notifications section (`[notifications]`): where notifications go besides the knowledge base."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from autarky.core.durations import Duration
from autarky.core.settings_section import SecretSetting, SettingsSection


class NotificationSettings(SettingsSection):
    """Every notification is stored in the knowledge base (`autarky notifications` reads it from any
    host); with `webhook_url` set it is also POSTed there as JSON (``AUTARKY_NOTIFICATIONS__WEBHOOK_URL``).

    Delivery to the webhook is at least once: a POST whose answer was lost is sent again, with the same
    ``Idempotency-Key`` header (and ``key`` in the body) for the receiver to drop the repeat.
    """

    # Secret: a webhook URL (Slack, a chat bot) usually carries its token.
    webhook_url: SecretSetting | None = None
    webhook_timeout: Duration = Field(timedelta(seconds=10), gt=timedelta(0))
