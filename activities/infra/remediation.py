"""Built-in safe remediations that touch only Autarky's own files: notify and clear the cache."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import structlog
from temporalio import activity

from autarky.autopilot.types import PruneCacheInput
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.metrics import ACTIONS

log = structlog.get_logger(__name__)


class RemediationActivities:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.cache_dir = data_dir / "cache"
        self.notifications = data_dir / "notifications.jsonl"

    @activity.defn(name="notify")
    async def notify(self, request: ActionRequest) -> ActionResult:
        """Append a notification for the operators, once per action id even under retries."""
        await asyncio.to_thread(self._append_notification, request)
        log.warning("autopilot notification", action_id=request.action_id, reason=request.reason)
        ACTIONS.labels(request.action_type, "succeeded").inc()
        return ActionResult(success=True, detail=f"notified: {request.reason}", improvement_measured=False)

    def _append_notification(self, request: ActionRequest) -> None:
        self.notifications.parent.mkdir(parents=True, exist_ok=True)
        if self.notifications.exists():
            with self.notifications.open() as existing:
                if any(
                    json.loads(line).get("action_id") == request.action_id
                    for line in existing
                    if line.strip()
                ):
                    return  # a retry of a notification already written
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "action_id": request.action_id,
            "reason": request.reason,
        }
        with self.notifications.open("a") as out:
            out.write(json.dumps(entry) + "\n")

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
