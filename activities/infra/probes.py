"""Probe activities: what the Monitor stage sees of the host and of the network around it.

Both activities only observe. Bad input is a non-retryable `ApplicationError` (retrying cannot fix it);
an unreachable network target is a measurement (loss), not a failure of the activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.infra.task_queues import describe_activity_queue
from activities.infra.worker_pool import MEMBER_FLAG, LocalWorkerPool
from autarky.autopilot.types import (
    CpuStats,
    DiskStats,
    HostProbeInput,
    HostSample,
    MemoryStats,
    NetworkIOStats,
    NetworkProbeInput,
    NetworkSample,
    ProcessInfo,
    TargetProbeResult,
    Temperature,
)

# How long CPU usage is measured for. psutil keeps its `cpu_percent(interval=None)` baseline per
# thread, and `asyncio.to_thread` may run each probe on a different pool thread, so a baseline primed
# at import time is not reliable: every probe measures over its own short window instead.
log = structlog.get_logger(__name__)
CPU_WINDOW_SECONDS = 0.1
TEMPERATURES_UNAVAILABLE = "not available on this platform"
_PORT = re.compile(r"[0-9]{1,5}")


# ------------------------------------------------------------------------------------------- host


@activity.defn(name="probe_host")
async def probe_host(request: HostProbeInput) -> HostSample:
    """Sample CPU, memory, disk, network I/O, temperatures and the largest processes of this host."""
    # psutil blocks (and the CPU window sleeps), so keep it off the worker's event loop.
    sample = await asyncio.to_thread(_sample_host, request)
    if request.pool_task_queue:
        try:
            stats = await describe_activity_queue(activity.client(), request.pool_task_queue)
        except RPCError as error:  # the sample is still worth having without the backlog
            log.warning("could not read the pool queue's backlog", error=str(error))
        else:
            sample.pool_backlog = stats.backlog
            sample.pool_backlog_age_seconds = stats.backlog_age_seconds
    return sample


class HostProbe:
    """`probe_host` on a worker of a host whose local pool lives under `data_dir` (every worker of the host
    reads the same settings): the sample also carries the pool's members and the slots they have in use."""

    def __init__(self, data_dir: Path) -> None:
        self.pool = LocalWorkerPool(data_dir)

    @activity.defn(name="probe_host")
    async def probe_host(self, request: HostProbeInput) -> HostSample:
        sample = await probe_host(request)
        if not self.pool.dir.is_dir():  # no pool was ever started here: nothing to say (None)
            return sample
        try:
            load = await asyncio.to_thread(self.pool.load)  # reads only: safe beside the pool's owner
        except OSError as error:  # the sample is still worth having without the pool's load
            log.warning("could not read the local pool's load", pool_dir=str(self.pool.dir), error=str(error))
            return sample
        sample.pool_members = load.members
        sample.pool_in_flight = load.in_flight
        sample.pool_slots_per_member = load.slots_per_member
        sample.pool_desired = load.desired
        sample.pool_schedule_to_start_seconds = load.schedule_to_start_seconds
        return sample


def _sample_host(request: HostProbeInput) -> HostSample:
    taken_at = datetime.now(UTC)
    disk = _disk(request.disk_path)  # first: bad input should fail before the CPU window is spent
    own = _own_processes() if request.own_processes else []
    cpu, top_processes = _cpu_and_top_processes(request.top_processes, own)
    temperatures = _temperatures()
    return HostSample(
        taken_at=taken_at,
        hostname=socket.gethostname(),
        cpu=cpu,
        memory=_memory(),
        disk=disk,
        network=_network_io(),
        temperatures=temperatures,
        temperatures_note=None if temperatures else TEMPERATURES_UNAVAILABLE,
        top_processes=top_processes,
        own_processes=[info for _, info in own],
    )


def _disk(path: str) -> DiskStats:
    try:
        usage = psutil.disk_usage(path)
    except FileNotFoundError:
        raise ApplicationError(
            f"disk path {path!r} does not exist", type="InvalidProbeInput", non_retryable=True
        ) from None
    try:
        io = psutil.disk_io_counters()  # host-wide: psutil cannot attribute I/O to a path
    except (OSError, NotImplementedError):  # e.g. containers without /proc/diskstats
        io = None
    return DiskStats(
        path=path,
        total_bytes=usage.total,
        used_bytes=usage.used,
        used_percent=usage.percent,
        read_bytes=io.read_bytes if io else None,
        write_bytes=io.write_bytes if io else None,
        read_count=io.read_count if io else None,
        write_count=io.write_count if io else None,
    )


def _cpu_and_top_processes(
    top_n: int, own: list[tuple[psutil.Process, ProcessInfo]]
) -> tuple[CpuStats, list[ProcessInfo]]:
    """Measure system and per-process CPU over the same window, so the numbers are comparable. Autarky's
    own processes get their CPU too (filled into their `ProcessInfo`): whether a high host CPU is the
    pool's, which a restart could answer, or another process's, which it could not."""
    top = _largest_processes(top_n)
    watched = [proc for proc, _ in top] + [proc for proc, _ in own]
    psutil.cpu_percent(interval=None)  # these first calls only set the baselines (they return 0.0)
    psutil.cpu_percent(interval=None, percpu=True)
    for proc in watched:
        with contextlib.suppress(psutil.Error):
            proc.cpu_percent(interval=None)
    time.sleep(CPU_WINDOW_SECONDS)
    total = psutil.cpu_percent(interval=None)
    per_core = psutil.cpu_percent(interval=None, percpu=True)

    processes = [
        ProcessInfo(pid=proc.pid, name=proc.info["name"] or "", rss_bytes=rss, cpu_percent=_process_cpu(proc))
        for proc, rss in top
    ]
    for proc, info in own:
        info.cpu_percent = _process_cpu(proc)

    load_1m, load_5m, load_15m = psutil.getloadavg()
    cpu = CpuStats(
        percent=total,
        per_core_percent=per_core,
        load_1m=load_1m,
        load_5m=load_5m,
        load_15m=load_15m,
        core_count=psutil.cpu_count() or len(per_core),
    )
    return cpu, processes


def _process_cpu(proc: psutil.Process) -> float | None:
    """Its CPU since the baseline (can exceed 100 on many cores); None when it is gone or denied since it
    was listed (its size is kept)."""
    try:
        return proc.cpu_percent(interval=None)
    except psutil.Error:
        return None


def _largest_processes(top_n: int) -> list[tuple[psutil.Process, int]]:
    if top_n == 0:
        return []
    sized = []
    # process_iter skips processes that vanish; attributes it may not read come back as None.
    for proc in psutil.process_iter(["name", "memory_info"]):
        memory = proc.info["memory_info"]
        if memory is not None:
            sized.append((proc, memory.rss))
    sized.sort(key=lambda item: item[1], reverse=True)
    return sized[:top_n]


def _own_processes() -> list[tuple[psutil.Process, ProcessInfo]]:
    """Autarky's own processes (the leak detector watches them): pool members and `autarky` itself; their
    CPU is filled in by `_cpu_and_top_processes`."""
    own = []
    for proc in psutil.process_iter(["name", "cmdline", "memory_info"]):
        cmdline, memory = proc.info["cmdline"] or [], proc.info["memory_info"]
        if memory is None or not _is_autarky(cmdline):
            continue
        role = "pool member" if MEMBER_FLAG in cmdline else "autarky"
        info = ProcessInfo(pid=proc.pid, name=proc.info["name"] or "", rss_bytes=memory.rss, role=role)
        own.append((proc, info))
    return own


def _is_autarky(cmdline: list[str]) -> bool:
    """`autarky …`, `python …/bin/autarky …` (the console script) or `python -m autarky.cli.main …`; not an
    editor or `git` that merely names a file or folder called autarky."""
    if not cmdline:
        return False
    program, rest = os.path.basename(cmdline[0]), cmdline[1:3]
    if program == "autarky":
        return True
    if not program.startswith("python"):
        return False
    return bool(rest) and (os.path.basename(rest[0]) == "autarky" or rest == ["-m", "autarky.cli.main"])


def _memory() -> MemoryStats:
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return MemoryStats(
        total_bytes=memory.total,
        available_bytes=memory.available,
        used_percent=memory.percent,
        swap_total_bytes=swap.total,
        swap_used_percent=swap.percent,
    )


def _network_io() -> NetworkIOStats:
    counters = psutil.net_io_counters()
    if counters is None:  # no network interfaces at all: report zeros rather than fail the sample
        return NetworkIOStats(**dict.fromkeys(NetworkIOStats.model_fields, 0))
    return NetworkIOStats(
        bytes_sent=counters.bytes_sent,
        bytes_recv=counters.bytes_recv,
        packets_sent=counters.packets_sent,
        packets_recv=counters.packets_recv,
        errors_in=counters.errin,
        errors_out=counters.errout,
        drops_in=counters.dropin,
        drops_out=counters.dropout,
    )


def _temperatures() -> list[Temperature]:
    read_sensors = getattr(psutil, "sensors_temperatures", None)  # absent on Windows and some BSDs
    if read_sensors is None:
        return []
    return [
        Temperature(
            sensor=sensor,
            label=reading.label,
            current_celsius=reading.current,
            high_celsius=reading.high,
            critical_celsius=reading.critical,
        )
        for sensor, readings in read_sensors().items()
        for reading in readings
    ]


# ---------------------------------------------------------------------------------------- network


@activity.defn(name="probe_network")
async def probe_network(request: NetworkProbeInput) -> NetworkSample:
    """TCP-connect to each "host:port" target `attempts` times and report loss and connect latency."""
    taken_at = datetime.now(UTC)
    # Parse every target before probing any, so a typo fails fast instead of after the timeouts.
    parsed = [(target, *_parse_target(target)) for target in request.targets]
    # Targets are probed concurrently; attempts on one target run one after another.
    results = await asyncio.gather(
        *(
            _probe_target(target, host, port, request.attempts, request.timeout_seconds)
            for target, host, port in parsed
        )
    )
    return NetworkSample(taken_at=taken_at, targets=list(results))


def _parse_target(target: str) -> tuple[str, int]:
    host, sep, port_text = target.rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # IPv6 literal, "[::1]:443"
        host = host[1:-1]
    elif ":" in host:  # an unbracketed IPv6 address would make the port ambiguous
        host = ""
    if not sep or not host or not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise ApplicationError(
            f"malformed network target {target!r}: expected host:port with a port in 1-65535",
            type="InvalidProbeInput",
            non_retryable=True,
        )
    return host, int(port_text)


async def _probe_target(
    target: str, host: str, port: int, attempts: int, timeout: float
) -> TargetProbeResult:
    latencies: list[float] = []
    error: str | None = None
    for _ in range(attempts):
        # Latency includes name resolution, as any client connecting by name would see it.
        started = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            error = f"timed out after {timeout:g}s"
            continue
        except OSError as exc:  # refused, unreachable, unresolvable name: all count as loss
            error = f"{type(exc).__name__}: {exc}"
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    return TargetProbeResult(
        target=target,
        attempts=attempts,
        successes=len(latencies),
        loss_ratio=(attempts - len(latencies)) / attempts,
        latency_ms_avg=sum(latencies) / len(latencies) if latencies else None,
        latency_ms_min=min(latencies, default=None),
        latency_ms_max=max(latencies, default=None),
        error=error,  # the last failure, kept even when later attempts succeeded
    )
