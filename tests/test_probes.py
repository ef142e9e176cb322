"""The probe activities, run against the real host and real sockets (no mocks)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.infra.probes import TEMPERATURES_UNAVAILABLE, probe_host, probe_network
from autarky.autopilot.samples import to_metric_point
from autarky.autopilot.types import HostProbeInput, HostSample, NetworkProbeInput, NetworkSample


async def run_host(request: HostProbeInput) -> HostSample:
    return await ActivityEnvironment().run(probe_host, request)


async def run_network(request: NetworkProbeInput) -> NetworkSample:
    return await ActivityEnvironment().run(probe_network, request)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------- host


async def test_host_sample_values_are_sane() -> None:
    sample = await run_host(HostProbeInput(disk_path="/", top_processes=5))

    assert sample.taken_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - sample.taken_at) < timedelta(seconds=30)
    assert sample.hostname == socket.gethostname()

    cpu = sample.cpu
    assert 0 <= cpu.percent <= 100
    assert len(cpu.per_core_percent) == psutil.cpu_count() == cpu.core_count
    assert all(0 <= p <= 100 for p in cpu.per_core_percent)
    assert min(cpu.load_1m, cpu.load_5m, cpu.load_15m) >= 0

    memory = sample.memory
    assert memory.total_bytes > 0
    assert 0 < memory.available_bytes <= memory.total_bytes
    assert 0 <= memory.used_percent <= 100
    assert memory.swap_total_bytes >= 0
    assert 0 <= memory.swap_used_percent <= 100

    disk = sample.disk
    assert disk.path == "/"
    assert disk.total_bytes > 0
    assert 0 <= disk.used_bytes <= disk.total_bytes
    assert 0 <= disk.used_percent <= 100
    io = [disk.read_bytes, disk.write_bytes, disk.read_count, disk.write_count]
    if psutil.disk_io_counters() is None:
        assert io == [None] * 4
    else:
        assert all(value is not None and value >= 0 for value in io)

    assert min(sample.network.model_dump().values()) >= 0

    if sample.temperatures:
        assert sample.temperatures_note is None
        assert all(t.sensor for t in sample.temperatures)
    else:
        assert sample.temperatures_note == TEMPERATURES_UNAVAILABLE == "not available on this platform"

    top = sample.top_processes
    assert 0 < len(top) <= 5  # at least this test's own process is readable
    rss = [p.rss_bytes for p in top]
    assert rss == sorted(rss, reverse=True)
    assert all(size > 0 for size in rss)
    assert len({p.pid for p in top}) == len(top)


async def test_own_process_is_listed_when_there_is_room() -> None:
    sample = await run_host(HostProbeInput(top_processes=100))
    listed = {p.pid: p for p in sample.top_processes}
    me = listed.get(os.getpid())
    if me is None:
        # Only a full list may leave out a process the probe can always read: this one.
        assert len(listed) == 100
    else:
        assert me.name == psutil.Process().name()
        assert me.rss_bytes > 0


async def test_top_processes_can_be_turned_off() -> None:
    sample = await run_host(HostProbeInput(top_processes=0))
    assert sample.top_processes == []


async def test_cpu_is_measured_not_the_meaningless_first_reading() -> None:
    # Keep one core busy during the probe: a psutil baseline that was never primed reads 0.0.
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        sample = await run_host(HostProbeInput(top_processes=100))
    finally:
        stop.set()
        spinner.join()

    assert sample.cpu.percent > 0
    assert max(sample.cpu.per_core_percent) > 0
    me = next((p for p in sample.top_processes if p.pid == os.getpid()), None)
    if me is not None:
        assert me.cpu_percent is not None and me.cpu_percent > 0


async def test_missing_disk_path_is_a_non_retryable_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "disk"
    with pytest.raises(ApplicationError) as caught:
        await run_host(HostProbeInput(disk_path=str(missing)))
    assert caught.value.non_retryable
    assert str(missing) in caught.value.message


# ---------------------------------------------------------------------------------------- network


@pytest.fixture
async def tcp_server() -> AsyncIterator[tuple[int, list[int]]]:
    """A real listening server on 127.0.0.1; yields its port and a list that grows per connection."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], accepted


async def test_reachable_target_has_no_loss_and_a_latency(tcp_server: tuple[int, list[int]]) -> None:
    port, accepted = tcp_server
    target = f"127.0.0.1:{port}"
    sample = await run_network(NetworkProbeInput(targets=[target], attempts=3, timeout_seconds=2))

    assert sample.taken_at.utcoffset() == timedelta(0)
    [result] = sample.targets
    assert result.target == target
    assert (result.attempts, result.successes, result.loss_ratio, result.error) == (3, 3, 0.0, None)
    assert result.latency_ms_min is not None and result.latency_ms_max is not None
    assert 0 < result.latency_ms_min <= result.latency_ms_avg <= result.latency_ms_max < 2000

    # The probe really connected, once per attempt.
    for _ in range(100):
        if len(accepted) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(accepted) == 3


async def test_closed_port_is_full_loss_not_an_error() -> None:
    target = f"127.0.0.1:{closed_port()}"
    sample = await run_network(NetworkProbeInput(targets=[target], attempts=2, timeout_seconds=2))

    [result] = sample.targets
    assert (result.attempts, result.successes, result.loss_ratio) == (2, 0, 1.0)
    assert result.latency_ms_avg is result.latency_ms_min is result.latency_ms_max is None
    assert result.error  # says why, e.g. connection refused


async def test_targets_are_reported_in_request_order(tcp_server: tuple[int, list[int]]) -> None:
    port, _ = tcp_server
    targets = [f"127.0.0.1:{closed_port()}", f"127.0.0.1:{port}", f"[::1]:{closed_port()}"]
    sample = await run_network(NetworkProbeInput(targets=targets, attempts=1, timeout_seconds=2))

    assert [r.target for r in sample.targets] == targets
    assert [r.loss_ratio for r in sample.targets] == [1.0, 0.0, 1.0]


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs when the backlog is full")
async def test_unanswered_connect_times_out_as_loss() -> None:
    # A listener that never accepts and whose backlog is full leaves new connects hanging.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            time.sleep(0.1)

            started = time.perf_counter()
            sample = await run_network(
                NetworkProbeInput(targets=[f"127.0.0.1:{port}"], attempts=2, timeout_seconds=0.2)
            )
            elapsed = time.perf_counter() - started
        finally:
            for filler in fillers:
                filler.close()

    [result] = sample.targets
    assert result.loss_ratio == 1.0
    assert result.error is not None and "timed out" in result.error
    assert 0.35 < elapsed < 2  # two attempts, each cut off at the timeout


@pytest.mark.parametrize(
    "target",
    [
        "localhost",
        "localhost:",
        ":80",
        "localhost:0",
        "localhost:65536",
        "localhost:http",
        "::1:80",
        "host:８０",
    ],
)
async def test_malformed_target_is_a_non_retryable_error(target: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        await run_network(NetworkProbeInput(targets=["127.0.0.1:80", target]))
    assert caught.value.non_retryable
    assert repr(target) in caught.value.message


async def test_host_probe_finds_autarkys_own_processes_and_their_roles(tmp_path: Path) -> None:
    script = tmp_path / "autarky"  # run as `python …/autarky --activities-only`, like a pool member
    started = "import time; print('started', flush=True); time.sleep(60)"
    script.write_text(started + "\n")
    pipe = asyncio.subprocess.PIPE
    member = await asyncio.create_subprocess_exec(sys.executable, script, "--activities-only", stdout=pipe)
    editor = await asyncio.create_subprocess_exec(sys.executable, "-c", started, "autarky", stdout=pipe)
    try:
        for process in (member, editor):  # both interpreters up (a busy machine starts them late)
            assert process.stdout is not None and await process.stdout.readline() == b"started\n"
        sample = await run_host(HostProbeInput(top_processes=0))
    finally:
        for process in (member, editor):
            process.kill()
            await process.wait()
    own = {p.pid: p for p in sample.own_processes}
    assert member.pid in own and own[member.pid].role == "pool member"
    assert own[member.pid].rss_bytes > 1_000_000  # a real interpreter's resident memory
    assert editor.pid not in own  # merely naming "autarky" as an argument does not make it ours
    assert sample.top_processes == []  # top_processes=0 asks for none; own processes come regardless


async def test_host_probe_measures_the_cpu_of_autarkys_own_processes(tmp_path: Path) -> None:
    """Whose CPU a busy host spends (issue 25): a pool member's CPU is measured, so the autopilot can tell
    a busy pool (a restart may help) from other processes' load (it cannot)."""
    script = tmp_path / "autarky"  # a pool member that keeps one core busy
    script.write_text("print('started', flush=True)\nwhile True:\n    pass\n")
    pipe = asyncio.subprocess.PIPE
    member = await asyncio.create_subprocess_exec(sys.executable, script, "--activities-only", stdout=pipe)
    try:
        assert member.stdout is not None and await member.stdout.readline() == b"started\n"
        sample = await run_host(HostProbeInput(top_processes=0))
    finally:
        member.kill()
        await member.wait()
    spinning = next(p for p in sample.own_processes if p.pid == member.pid)
    assert spinning.cpu_percent is not None and spinning.cpu_percent > 0
    assert all(p.cpu_percent is not None for p in sample.own_processes if p.role == "pool member")
    pool_cpu = to_metric_point(sample, None).pool_cpu_percent
    assert pool_cpu is not None and 0 < pool_cpu <= 100  # in the host's terms, like cpu.percent
