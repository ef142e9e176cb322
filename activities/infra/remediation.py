"""Built-in safe remediations: notify (the knowledge base and an optional webhook) and clear the cache."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import structlog
from temporalio import activity

from activities.infra.webhook import post_notification, where
from activities.storage.handle import KnowledgeBaseHandle
from autarky.autopilot.types import PruneCacheInput
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.metrics import ACTIONS
from autarky.core.notification_settings import NotificationSettings
from autarky.core.settings import AutarkySettings

log = structlog.get_logger(__name__)


class RemediationActivities:
    def __init__(
        self,
        data_dir: Path,
        kb: KnowledgeBaseHandle | None = None,
        notifications: NotificationSettings | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.cache_dir = data_dir / "cache"
        # None: the default configuration's knowledge base, SQLite in the data directory.
        self.kb = kb or KnowledgeBaseHandle(f"sqlite:///{(data_dir / 'knowledge.db').as_posix()}")
        self.notifications = notifications or NotificationSettings()

    @classmethod
    def from_settings(cls, settings: AutarkySettings) -> RemediationActivities:
        return cls(settings.data_dir, KnowledgeBaseHandle(settings.knowledge_db_url), settings.notifications)

    @activity.defn(name="notify")
    async def notify(self, request: ActionRequest) -> ActionResult:
        """Store a notification in the knowledge base, once per action id even under retries, and POST
        it to the webhook when one is configured (at least once: activities/infra/webhook.py)."""
        # SQLAlchemy loads on first use (activities/storage/handle.py), not when a worker starts.
        from activities.infra.notifications import mark_delivered, store_notification

        kb = self.kb
        stored, created = await kb.run(
            lambda: store_notification(
                kb.get(), request.action_id, request.action_type, request.reason, request.host
            )
        )
        if created:
            log.warning("autopilot notification", action_id=request.action_id, reason=request.reason)
        delivered = ""
        webhook = self.notifications.webhook_url
        if webhook is not None and stored.delivered_at is None:  # else a retry after the webhook took it
            url = webhook.get_secret_value()
            body = {
                "host": stored.host,
                "action_type": stored.action_type,
                "reason": stored.reason,
                "created_at": stored.created_at.isoformat(),
            }
            await post_notification(url, stored.key, body, self.notifications.webhook_timeout)
            await kb.run(lambda: mark_delivered(kb.get(), stored.key))
            delivered = f" (and to {where(url)})"
        ACTIONS.labels(request.action_type, "succeeded").inc()
        return ActionResult(
            success=True, detail=f"notified{delivered}: {request.reason}", improvement_measured=False
        )

    @activity.defn(name="clear_cache")
    async def clear_cache(self, request: ActionRequest) -> ActionResult:
        """Delete Autarky's cache; improvement is the share of used disk space it freed."""
        before = await asyncio.to_thread(shutil.disk_usage, self.data_dir if self.data_dir.exists() else ".")
        files, freed = await asyncio.to_thread(_delete_older_than, self.cache_dir, None)
        improvement = min(1.0, freed / before.used) if before.used else 0.0
        ACTIONS.labels(request.action_type, "succeeded").inc()
        log.info("cache cleared", files=files, freed_bytes=freed)
        return ActionResult(
            success=True,
            improvement=improvement,
            detail=f"deleted {files} files, freed {freed} bytes from {self.cache_dir}",
            nothing_to_do=files == 0,  # an empty cache teaches nothing about what clearing achieves
        )

    @activity.defn(name="prune_cache")
    async def prune_cache(self, request: PruneCacheInput) -> ActionResult:
        """Housekeeping: delete cache files older than `max_age`."""
        files, freed = await asyncio.to_thread(
            _delete_older_than, self.cache_dir, request.max_age.total_seconds()
        )
        return ActionResult(
            success=True,
            detail=f"pruned {files} files ({freed} bytes) older than {request.max_age}",
            nothing_to_do=files == 0,
        )


def _delete_older_than(root: Path, max_age_seconds: float | None) -> tuple[int, int]:
    """Delete regular files under `root` (all of them when max_age_seconds is None); (count, bytes)."""
    if not root.exists():
        return 0, 0
    now = datetime.now(UTC).timestamp()
    files = freed = 0
    for path in sorted(root.rglob("*"), reverse=True):  # children before their folders
        if path.is_symlink() or path.is_file():
            stat = path.lstat()
            if max_age_seconds is None or now - stat.st_mtime > max_age_seconds:
                path.unlink(missing_ok=True)
                files += 1
                freed += stat.st_size
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return files, freed
