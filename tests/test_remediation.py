"""The built-in remediations and the local worker pool, on real files and real processes."""

from __future__ import annotations

import os
import shlex
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from temporalio.testing import ActivityEnvironment

from activities.infra.notifications import Notification, recent_notifications
from activities.infra.remediation import RemediationActivities
from activities.infra.worker_pool import MEMBER_FLAG, LocalWorkerPool, WorkerPoolActivities
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase
from autarky.autopilot.types import PruneCacheInput
from autarky.core.actions import ActionRequest


def request(action_type: str, action_id: str = "act-1") -> ActionRequest:
    return ActionRequest(action_id=action_id, action_type=action_type, reason="test")


def notifications(data_dir: Path) -> list[Notification]:
    """What `notify` stored in the default (SQLite, in `data_dir`) knowledge base, newest first."""
    kb = KnowledgeBase(f"sqlite:///{data_dir / 'knowledge.db'}")
    try:
        kb.migrate()  # none yet, when nothing was notified
        return recent_notifications(kb)
    finally:
        kb.close()


async def test_notify_stores_once_per_action_even_when_retried(tmp_path: Path) -> None:
    activities = RemediationActivities(tmp_path)
    env = ActivityEnvironment()
    for _ in range(2):  # a retry of the same action
        result = await env.run(activities.notify, request("notify", "act-7"))
        assert result.success and not result.improvement_measured
    await env.run(activities.notify, request("notify", "act-8"))
    stored = notifications(tmp_path)
    assert [n.key for n in stored] == ["act-8", "act-7"]  # newest first
    assert all(n.reason == "test" and n.action_type == "notify" for n in stored)
    assert not (tmp_path / "notifications.jsonl").exists()


async def test_two_hosts_notify_into_one_knowledge_base(tmp_path: Path) -> None:
    kb = KnowledgeBaseHandle(f"sqlite:///{tmp_path / 'shared.db'}")
    for host in ("host-a", "host-b"):  # each with a data directory of its own
        activities = RemediationActivities(tmp_path / host, kb)
        notice = ActionRequest(action_id=f"{host}:1", action_type="notify", reason="x", host=host)
        await ActivityEnvironment().run(activities.notify, notice)
    assert {(n.key, n.host) for n in recent_notifications(kb.get())} == {
        ("host-a:1", "host-a"),
        ("host-b:1", "host-b"),
    }
    assert [n.key for n in recent_notifications(kb.get(), host="host-b")] == ["host-b:1"]


async def test_autarky_notifications_lists_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from autarky.cli.main import app

    monkeypatch.setenv("AUTARKY_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no autarky.toml of the working tree
    empty = CliRunner().invoke(app, ["notifications"])
    assert empty.exit_code == 0 and "no notifications yet" in empty.output
    assert not (tmp_path / "knowledge.db").exists()  # reading made no database
    notice = ActionRequest(action_id="ap-9:act-1", action_type="notify", reason="disk full", host="web-2")
    await ActivityEnvironment().run(RemediationActivities(tmp_path).notify, notice)
    listed = CliRunner().invoke(app, ["notifications", "--host", "web-2"])
    assert listed.exit_code == 0, listed.output
    assert "disk full" in listed.output and "web-2" in listed.output and "ap-9:act-1" in listed.output
    other = CliRunner().invoke(app, ["notifications", "--host", "web-3"])
    assert "no notifications yet" in other.output


async def test_clear_cache_deletes_only_the_cache(tmp_path: Path) -> None:
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "a.bin").write_bytes(b"a" * 1000)
    (tmp_path / "cache" / "b.bin").write_bytes(b"b" * 24)
    (tmp_path / "keep.db").write_bytes(b"k")
    result = await ActivityEnvironment().run(
        RemediationActivities(tmp_path).clear_cache, request("clear_cache")
    )
    assert result.success and "deleted 2 files, freed 1024 bytes" in result.detail
    assert 0 < result.improvement < 1
    assert (tmp_path / "keep.db").exists() and not any((tmp_path / "cache").rglob("*"))
    again = await ActivityEnvironment().run(
        RemediationActivities(tmp_path).clear_cache, request("clear_cache")
    )
    assert again.success and "deleted 0 files" in again.detail and again.improvement == 0


async def test_prune_cache_keeps_recent_files(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    old, new = cache / "old.bin", cache / "new.bin"
    old.write_bytes(b"o" * 10)
    new.write_bytes(b"n" * 10)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    result = await ActivityEnvironment().run(
        RemediationActivities(tmp_path).prune_cache, PruneCacheInput(max_age=timedelta(days=1))
    )
    assert "pruned 1 files" in result.detail
    assert new.exists() and not old.exists()


SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)", MEMBER_FLAG]


@pytest.fixture
def pool(tmp_path: Path):  # type: ignore[no-untyped-def]
    pool = LocalWorkerPool(tmp_path, command=SLEEPER)
    yield pool
    pool.stop_all()


def command_line(process: psutil.Process, seconds: float = 10.0) -> list[str]:
    """The member's command line once its exec is through: read as soon as Popen returns, it can still be
    the parent's or empty for a moment (the exec is finishing), a moment a busy machine stretches."""
    deadline = time.monotonic() + seconds
    while MEMBER_FLAG not in (cmdline := process.cmdline()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return cmdline


def test_pool_ensure_starts_and_stops_real_processes(pool: LocalWorkerPool) -> None:
    members = pool.ensure(2)
    assert [m.slot for m in members] == [0, 1]
    assert all(m.process.is_running() and MEMBER_FLAG in command_line(m.process) for m in members)
    assert len(pool.members()) == 2
    pool.ensure(1)
    assert [m.slot for m in pool.members()] == [0]
    assert not members[1].process.is_running() or members[1].process.status() == psutil.STATUS_ZOMBIE


def test_pool_ignores_a_pid_file_pointing_at_someone_else(pool: LocalWorkerPool, tmp_path: Path) -> None:
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "member-0.pid").write_text(str(os.getpid()))  # this test process: not a member
    assert pool.members() == []
    assert not (tmp_path / "pool" / "member-0.pid").exists()


def test_a_member_still_starting_is_not_taken_for_a_stranger(tmp_path: Path) -> None:
    """Just after Popen returns, a member's command line is not its own yet (empty while its exec
    finishes; here a launcher's, for longer). A capacity read then must not delete its pid file: the pool
    would lose it, start another in its slot, and leak the first (tests/test_local_pool_scaling.py)."""
    pool = LocalWorkerPool(tmp_path, command=["/bin/sh", "-c", f"sleep 1; exec {shlex.join(SLEEPER)}"])
    try:
        [member] = pool.ensure(1)
        assert [m.process.pid for m in pool.members()] == [member.process.pid]
        assert [m.process.pid for m in pool.ensure(1)] == [member.process.pid]  # no second member
    finally:
        pool.stop_all()
    assert not member.process.is_running() or member.process.status() == psutil.STATUS_ZOMBIE


async def test_restart_worker_pool_replaces_every_member(pool: LocalWorkerPool) -> None:
    before = {m.process.pid for m in pool.ensure(2)}
    # No warm-up: the sleepers' memory is not what this test measures (it would wait 30 s by default).
    result = await ActivityEnvironment().run(
        WorkerPoolActivities(pool, warmup=timedelta(0)).restart_worker_pool, request("restart_worker_pool")
    )
    after = {m.process.pid for m in pool.members()}
    assert result.success and "restarted 2 members" in result.detail
    assert len(after) == 2 and not (before & after)


async def test_restart_with_an_empty_pool_says_so(pool: LocalWorkerPool) -> None:
    result = await ActivityEnvironment().run(
        WorkerPoolActivities(pool).restart_worker_pool, request("restart_worker_pool")
    )
    assert result.success and "no members" in result.detail
