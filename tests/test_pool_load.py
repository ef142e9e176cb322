"""Slots in use per pool member (issue 28, "signals capacity changes"): a member's worker counts its
activities in flight into a load file, the pool sums the live members' files,
and the host probe carries the sum.

The member-style worker is a real Worker on the test server, built as `build_workers` builds a member's
pool-queue worker (the `LoadReporter` interceptor); the pool's members are processes carrying the pool's
command-line flag, as the pool recognises them (tests/pool_worker.py does the same)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.infra.pool_load import LoadReporter, MemberLoad, load_path
from activities.infra.probes import HostProbe
from activities.infra.worker_pool import MEMBER_FLAG, LocalWorkerPool
from autarky.autopilot.samples import to_metric_point
from autarky.autopilot.types import HostProbeInput, HostSample, MetricPoint
from autarky.core.settings import AutarkySettings

SLOTS = 5
RUNNING = 3
PROBE = HostProbeInput(top_processes=0, own_processes=False)


class Held:
    """Activities that run until the test lets them go: how many have started is an event, not a time."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    @activity.defn(name="pool_load_held")
    async def held(self, n: int) -> int:
        self.started += 1
        await self.release.wait()
        return n


@workflow.defn(name="PoolLoadTestWorkflow", sandboxed=False)
class RunHeld:
    @workflow.run
    async def run(self, n: int) -> list[int]:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "pool_load_held", i, result_type=int, start_to_close_timeout=timedelta(minutes=2)
                    )
                    for i in range(n)
                )
            )
        )


def stand_in_member() -> subprocess.Popen[bytes]:
    """A process the pool takes for a member (its command line carries the pool's flag)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", MEMBER_FLAG])


@pytest.fixture
def members() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def enrol(pool: LocalWorkerPool, slot: int, process: subprocess.Popen[bytes]) -> None:
    pool.dir.mkdir(parents=True, exist_ok=True)
    (pool.dir / f"member-{slot}.pid").write_text(str(process.pid))


def file_load(pool: LocalWorkerPool, pid: int) -> MemberLoad:
    return MemberLoad.model_validate_json(load_path(pool.dir, pid).read_text())


async def probe(data_dir: Path) -> tuple[HostSample, MetricPoint]:
    sample = await ActivityEnvironment().run(HostProbe(data_dir).probe_host, PROBE)
    return sample, to_metric_point(sample, None)


async def test_in_flight_activities_are_counted_while_they_run_and_summed_by_the_probe(
    client: Client, tmp_path: Path, members: list[subprocess.Popen[bytes]]
) -> None:
    pool = LocalWorkerPool(tmp_path)
    members.append(stand_in_member())
    enrol(pool, 0, members[0])
    (pool.dir / "desired").write_text("1")
    reporter = LoadReporter(pool.dir, SLOTS, pid=members[0].pid)
    assert file_load(pool, members[0].pid).in_flight == 0  # written at start: a fresh member reads idle

    held = Held()
    queue = f"pool-load-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[RunHeld],
        activities=[held.held],
        max_concurrent_activities=SLOTS,
        interceptors=[reporter],
    ):
        handle = await client.start_workflow(RunHeld.run, RUNNING, id=queue, task_queue=queue)
        async with asyncio.timeout(120):  # a generous bound for a busy machine: the wait ends at the event
            while held.started < RUNNING:
                await asyncio.sleep(0.05)

        running = file_load(pool, members[0].pid)
        assert (running.in_flight, running.slots) == (RUNNING, SLOTS)
        assert running.schedule_to_start_seconds is not None and running.schedule_to_start_seconds >= 0
        sample, point = await probe(tmp_path)
        assert (sample.pool_members, sample.pool_in_flight, sample.pool_slots_per_member) == (
            1,
            RUNNING,
            SLOTS,
        )
        assert sample.pool_desired == 1
        assert sample.pool_schedule_to_start_seconds is not None
        assert (point.pool_members, point.pool_in_flight, point.pool_slots_per_member) == (1, RUNNING, SLOTS)
        assert (point.pool_desired, point.pool_schedule_to_start_seconds) == (
            1,
            sample.pool_schedule_to_start_seconds,
        )

        held.release.set()
        assert sorted(await handle.result()) == list(range(RUNNING))

    assert file_load(pool, members[0].pid).in_flight == 0
    assert pool.load().in_flight == 0


def two_members(
    pool: LocalWorkerPool, members: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """Two stand-in members with pid files in `pool` (the fixture's list kills them after the test)."""
    members.extend([stand_in_member(), stand_in_member()])
    for slot, process in enumerate(members):
        enrol(pool, slot, process)
    first, second = members
    return first, second


async def test_a_dead_members_file_and_a_strangers_file_are_not_counted(
    tmp_path: Path, members: list[subprocess.Popen[bytes]]
) -> None:
    pool = LocalWorkerPool(tmp_path)
    live, dead = two_members(pool, members)
    LoadReporter(pool.dir, SLOTS, pid=live.pid).changed(+2)
    LoadReporter(pool.dir, SLOTS, pid=dead.pid).changed(+4)
    # Not a member at all (no pid file names it), e.g. `autarky worker --activities-only` run by hand.
    LoadReporter(pool.dir, SLOTS, pid=4_000_000).changed(+7)
    assert pool.load().in_flight == 2 + 4

    dead.kill()
    dead.wait()
    after = pool.load()
    assert (after.members, after.in_flight, after.desired) == (1, 2, None)
    assert load_path(pool.dir, dead.pid).exists()  # load() only reads: any process of the host may call it

    assert [m.process.pid for m in pool.members()] == [live.pid]  # the owner prunes
    assert not load_path(pool.dir, dead.pid).exists()
    assert not load_path(pool.dir, 4_000_000).exists()
    assert load_path(pool.dir, live.pid).exists()


@pytest.mark.parametrize(
    "content",
    [b'{"pid": 1, "in_flight": 3, "slo', b"\x00\xff not json", b'{"in_flight": -1}', b"[]"],
    ids=["torn", "garbage", "invalid", "not-an-object"],
)
async def test_a_torn_or_garbage_file_is_ignored_with_a_warning(
    tmp_path: Path, members: list[subprocess.Popen[bytes]], content: bytes
) -> None:
    pool = LocalWorkerPool(tmp_path)
    good, torn = two_members(pool, members)
    LoadReporter(pool.dir, SLOTS, pid=good.pid).changed(+1)
    load_path(pool.dir, torn.pid).write_bytes(content)

    with capture_logs() as logs:
        sample, _ = await probe(tmp_path)
    assert (sample.pool_members, sample.pool_in_flight) == (2, 1)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and "load file" in warnings[0]["event"]
    assert warnings[0]["path"] == str(load_path(pool.dir, torn.pid))


async def test_a_pool_at_zero_reads_as_zero_and_a_host_without_a_pool_says_nothing(tmp_path: Path) -> None:
    LocalWorkerPool(tmp_path / "with-pool").set_size(0)
    zero, _ = await probe(tmp_path / "with-pool")
    assert (zero.pool_members, zero.pool_in_flight, zero.pool_desired) == (0, 0, 0)
    assert zero.pool_slots_per_member is None  # no member to say how many slots one has

    none, point = await probe(tmp_path / "no-pool")
    assert (none.pool_members, none.pool_in_flight, none.pool_desired) == (None, None, None)
    assert point.pool_members is None
    # Stored points and samples of older probes (without these fields) still load.
    older = point.model_dump(mode="json", exclude={"pool_members", "pool_in_flight", "pool_desired"})
    assert MetricPoint.model_validate(older).pool_in_flight is None


async def test_a_member_built_by_build_workers_reports_its_pool_queue_slots(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autarky.scaling.pool_policy import POOL_MEMBER_SLOTS
    from workers.main import build_workers  # every workflow and activity: here only

    monkeypatch.setenv("AUTARKY_DATA_DIR", str(tmp_path))
    workers = build_workers(client, AutarkySettings(), workflows=False, pool_member=True)
    pool = LocalWorkerPool(tmp_path)
    written = file_load(pool, os.getpid())
    assert (written.in_flight, written.slots) == (0, POOL_MEMBER_SLOTS)
    pool_workers = [
        w for w in workers if any(isinstance(i, LoadReporter) for i in w.config()["interceptors"])
    ]
    assert [w.task_queue for w in pool_workers] == [workers[-1].task_queue]
    assert pool_workers[0].config()["max_concurrent_activities"] == POOL_MEMBER_SLOTS
