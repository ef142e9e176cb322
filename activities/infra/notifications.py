"""Notifications for people, in the knowledge base (revision 0007): the one place every host and every
person (`autarky notifications`) reads, wherever the `notify` activity happened to run.

A notification is stored once per key (the action id, unique across autopilots and hosts): a retried
activity finds the row an earlier attempt stored instead of adding a second one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from activities.storage.knowledge_base import KnowledgeBase
from activities.storage.schema import Base, UtcDateTime, utc_now


class NotificationRow(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    host: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    action_type: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


@dataclass(frozen=True)
class Notification:
    id: int
    key: str
    host: str | None
    action_type: str
    reason: str
    created_at: datetime
    delivered_at: datetime | None


_COLUMNS = (
    NotificationRow.id,
    NotificationRow.key,
    NotificationRow.host,
    NotificationRow.action_type,
    NotificationRow.reason,
    NotificationRow.created_at,
    NotificationRow.delivered_at,
)


def store_notification(
    kb: KnowledgeBase, key: str, action_type: str, reason: str, host: str | None = None
) -> tuple[Notification, bool]:
    """The notification stored under `key` and whether this call stored it (False: an earlier attempt
    did, and what it stored is returned: a retry is not a second notification)."""
    if not key:
        raise ValueError("a notification needs a key (the action id)")
    values = {"key": key, "host": host, "action_type": action_type, "reason": reason, "created_at": utc_now()}
    with kb._transaction() as connection:
        inserted = connection.execute(
            kb._insert(NotificationRow)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(NotificationRow.id)
        ).scalar_one_or_none()
        row = connection.execute(sa.select(*_COLUMNS).where(NotificationRow.key == key)).one()
    return Notification(*row), inserted is not None


def mark_delivered(kb: KnowledgeBase, key: str) -> None:
    """Record that the webhook took the notification (the first delivery's time is kept)."""
    with kb._transaction() as connection:
        connection.execute(
            sa.update(NotificationRow)
            .where(NotificationRow.key == key, NotificationRow.delivered_at.is_(None))
            .values(delivered_at=utc_now())
        )


def recent_notifications(kb: KnowledgeBase, limit: int = 50, host: str | None = None) -> list[Notification]:
    """The newest `limit` notifications (of `host`, if given), newest first."""
    query = sa.select(*_COLUMNS).order_by(NotificationRow.created_at.desc(), NotificationRow.id.desc())
    if host is not None:
        query = query.where(NotificationRow.host == host)
    with kb._transaction() as connection:
        return [Notification(*row) for row in connection.execute(query.limit(limit))]
