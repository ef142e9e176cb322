"""How much an idle `autarky up` costs: CPU and memory of the worker, the pool and the Temporal server.

    .venv/bin/python bench/footprint.py [--seconds 60] [--warmup 15]

Starts `autarky up` with a fresh temporary data dir on free ports (never the default 7233/8233/9464/9465,
so a developer's own stack is left alone), waits until the autopilot workflow runs, lets start-up settle
for the warm-up, then measures all processes side by side over the same window:

* CPU % of one core over the whole window (cpu_times delta / wall time, not instantaneous samples);
* RSS at the end and its peak, sampled every second; USS at the end.

The stack is stopped with SIGINT (killed after 30 s) and the data dir removed. The goals for the worker
are checked and printed as PASS/MISS; the exit code is 0 either way (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from autarky.autopilot.types import AutopilotStatus

BIN = Path(sys.executable).parent
AUTOPILOT_WORKFLOW_ID = "autarky-autopilot"
READY_TIMEOUT_SECONDS = 120.0
QUERY_TIMEOUT = timedelta(seconds=5)
STOP_TIMEOUT_SECONDS = 30.0
SAMPLE_EVERY_SECONDS = 1.0
MIB = 1 << 20

# Goals for the idle worker (the `autarky up` process).
# The project's idle goals: the worker, and the whole embedded stack (worker, pool, server).
GOAL_WORKER_CPU_PERCENT = 0.2
GOAL_WORKER_RSS_MIB = 90.0
GOAL_STACK_CPU_PERCENT = 1.0
GOAL_STACK_RSS_MIB = 300.0


# ------------------------------------------------------------------------------------------ the stack


@dataclass(frozen=True)
class Ports:
    server: int
    ui: int
    metrics: int
    sdk_metrics: int


def free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now (all sockets held open together, then released)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def stack_env(data_dir: Path, ports: Ports) -> dict[str, str]:
    """The environment for `autarky up`: this machine's own settings stripped, ours set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTARKY_", "TEMPORAL_"))}
    env.update(
        {
            # Neither an autarky.toml nor a Temporal envconfig profile may redirect the stack.
            "AUTARKY_CONFIG": str(data_dir / "no-autarky.toml"),
            "TEMPORAL_CONFIG_FILE": str(data_dir / "no-temporal.toml"),
            "AUTARKY_DATA_DIR": str(data_dir),
            "AUTARKY_SERVER_IP": "127.0.0.1",
            "AUTARKY_SERVER_PORT": str(ports.server),
            "AUTARKY_UI_PORT": str(ports.ui),
            "AUTARKY_METRICS_HOST": "127.0.0.1",
            "AUTARKY_METRICS_PORT": str(ports.metrics),
            "AUTARKY_SDK_METRICS_PORT": str(ports.sdk_metrics),
            "AUTARKY_WORKER_POOL_SIZE": "1",
            # The default probe target is the default server port; probe our own server instead, as
            # the default stack does, rather than someone else's (or nothing, which reads as 100 % loss).
            "AUTARKY_AUTOPILOT__NETWORK_TARGETS": f'["127.0.0.1:{ports.server}"]',
        }
    )
    return env


async def autopilot_status(client: Client) -> AutopilotStatus:
    """The autopilot's `status` query; answered only when a worker polls its workflow task queue."""
    handle = client.get_workflow_handle(AUTOPILOT_WORKFLOW_ID)
    return await handle.query("status", result_type=AutopilotStatus, rpc_timeout=QUERY_TIMEOUT)


async def wait_for_autopilot(address: str, up: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until the autopilot workflow runs and a worker answers its query (so the worker really
    polls: a started workflow alone is not enough); raises if `autarky up` exits or time runs out."""
    started = time.monotonic()
    client: Client | None = None
    while True:
        if up.poll() is not None:
            raise RuntimeError(f"`autarky up` exited with code {up.returncode} before the autopilot ran")
        try:
            client = client or await Client.connect(address, data_converter=pydantic_data_converter)
            description = await client.get_workflow_handle(AUTOPILOT_WORKFLOW_ID).describe()
            if description.status == WorkflowExecutionStatus.RUNNING:
                await autopilot_status(client)
                return time.monotonic() - started
        except (RuntimeError, RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
            pass  # server not up yet, workflow not started yet, or no worker polling yet
        if time.monotonic() - started > timeout:
            raise RuntimeError(
                f"after {timeout:.0f} s the autopilot was not running or no worker answered its query"
            )
        await asyncio.sleep(0.5)


async def query_status(address: str) -> AutopilotStatus:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    return await autopilot_status(client)


def read_pid(pid_file: Path) -> psutil.Process | None:
    try:
        return psutil.Process(int(pid_file.read_text().strip()))
    except (OSError, ValueError, psutil.Error):
        return None


def started_by_stack(up: subprocess.Popen[bytes], data_dir: Path) -> list[psutil.Process]:
    """What `autarky up` started: its children, and the server and pool members its pid files name
    (only when they are ours: the server by its database path, members by their data dir)."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        found |= {p.pid: p for p in psutil.Process(up.pid).children()}
    server = read_pid(data_dir / "temporal.pid")
    with contextlib.suppress(psutil.Error):
        if server and str(data_dir / "temporal.db") in server.cmdline():
            found[server.pid] = server
    for pid_file in (data_dir / "pool").glob("member-*.pid"):
        member = read_pid(pid_file)
        with contextlib.suppress(psutil.Error):
            if member and member.environ().get("AUTARKY_DATA_DIR") == str(data_dir):
                found[member.pid] = member
    return list(found.values())


def stop_stack(up: subprocess.Popen[bytes], data_dir: Path) -> str:
    """SIGINT to `autarky up` and wait (kill after the timeout); then make sure nothing it started
    lives on. Only processes this benchmark started are touched (psutil guards against pid reuse)."""
    started = started_by_stack(up, data_dir)
    outcome = "not running"
    if up.poll() is None:
        up.send_signal(signal.SIGINT)
        begun = time.monotonic()
        try:
            up.wait(timeout=STOP_TIMEOUT_SECONDS)
            outcome = f"stopped by SIGINT in {time.monotonic() - begun:.1f} s (exit code {up.returncode})"
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
            outcome = f"did not stop within {STOP_TIMEOUT_SECONDS:.0f} s of SIGINT: killed"
    leftovers = [p for p in started if _alive(p)]
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    if leftovers:
        outcome += f"; {len(leftovers)} leftover process(es) had to be stopped: " + ", ".join(
            str(p.pid) for p in leftovers
        )
    return outcome


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# ---------------------------------------------------------------------------------------- measuring


@dataclass
class Watched:
    """One process measured over the window."""

    label: str
    process: psutil.Process
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    rss_peak: int = 0
    rss_end: int = 0
    uss_end: int | None = None
    threads: int = 0
    gone: bool = False

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def begin(self) -> None:
        self.cpu_start = self.cpu_end = self.cpu_seconds()
        self.sample()

    def sample(self) -> None:
        if self.gone:
            return
        try:
            self.rss_end = self.process.memory_info().rss
        except psutil.Error:
            self.gone = True
            return
        self.rss_peak = max(self.rss_peak, self.rss_end)

    def finish(self) -> None:
        self.sample()
        if self.gone:
            return
        try:
            self.cpu_end = self.cpu_seconds()
            self.threads = self.process.num_threads()
            self.uss_end = self.process.memory_full_info().uss  # one smaps read, at the end only
        except psutil.AccessDenied:
            pass
        except psutil.Error:
            self.gone = True


@dataclass
class Window:
    watched: list[Watched]
    wall_seconds: float = 0.0
    samples: int = 0
    notes: list[str] = field(default_factory=list)


def measure(watched: list[Watched], seconds: float) -> Window:
    """CPU over the whole window from cpu_times deltas; RSS sampled every second."""
    window = Window(watched)
    started = time.monotonic()
    for w in watched:
        w.begin()
    for _ in _ticks(started, seconds):
        for w in watched:
            w.sample()
        window.samples += 1
    for w in watched:
        w.finish()
    window.wall_seconds = time.monotonic() - started
    window.notes += [f"{w.label} (pid {w.process.pid}) exited during the window" for w in watched if w.gone]
    return window


def _ticks(started: float, seconds: float) -> Iterator[int]:
    """One tick per second on a fixed grid (no drift), ending at `started + seconds`."""
    count = 0
    while True:
        count += 1
        target = min(started + count * SAMPLE_EVERY_SECONDS, started + seconds)
        time.sleep(max(0.0, target - time.monotonic()))
        yield count
        if target >= started + seconds:
            return


def metric_families(port: int) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as error:
        return f"{url}: no answer ({error})"
    families = sum(1 for line in text.splitlines() if line.startswith("# TYPE "))
    return f"{url}: {families} metric families, {len(text.encode()) / 1024:.1f} KiB"


# ------------------------------------------------------------------------------------------- report


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def print_report(window: Window) -> None:
    wall = window.wall_seconds
    print(f"\nwindow {wall:.1f} s, {window.samples} RSS samples, {psutil.cpu_count()} logical CPUs")
    header = f"{'process':<28} {'pid':>8} {'CPU %':>7} {'CPU s':>7} {'RSS end':>9} {'RSS peak':>9}"
    header += f" {'USS end':>9} {'threads':>7}"
    print(header + "\n" + "-" * len(header))
    for w in window.watched:
        cpu = w.cpu_end - w.cpu_start
        print(
            f"{w.label:<28} {w.process.pid:>8} {cpu / wall * 100:>7.2f} {cpu:>7.2f} {_mib(w.rss_end):>9}"
            f" {_mib(w.rss_peak):>9} {_mib(w.uss_end):>9} {w.threads:>7}"
        )
    total_cpu = sum(w.cpu_end - w.cpu_start for w in window.watched)
    print("-" * len(header))
    print(
        f"{'total':<28} {'':>8} {total_cpu / wall * 100:>7.2f} {total_cpu:>7.2f}"
        f" {_mib(sum(w.rss_end for w in window.watched)):>9}"
        f" {_mib(sum(w.rss_peak for w in window.watched)):>9}"
    )
    print("(CPU % is of one core over the window; memory in MiB)")
    for note in window.notes:
        print(f"note: {note}")


def print_goals(watched: list[Watched], wall: float) -> None:
    worker = watched[0]
    cpu = (worker.cpu_end - worker.cpu_start) / wall * 100
    peak = worker.rss_peak / MIB
    stack_cpu = sum(w.cpu_end - w.cpu_start for w in watched) / wall * 100
    stack_rss = sum(w.rss_end for w in watched) / MIB
    goals = [
        (f"worker CPU idle ≤ {GOAL_WORKER_CPU_PERCENT} %", f"{cpu:.2f} %", cpu <= GOAL_WORKER_CPU_PERCENT),
        (
            f"worker RSS (peak) ≤ {GOAL_WORKER_RSS_MIB:.0f} MiB",
            f"{peak:.1f} MiB",
            peak <= GOAL_WORKER_RSS_MIB,
        ),
        (
            f"stack CPU idle ≤ {GOAL_STACK_CPU_PERCENT} %",
            f"{stack_cpu:.2f} %",
            stack_cpu <= GOAL_STACK_CPU_PERCENT,
        ),
        (
            f"stack RSS ≤ {GOAL_STACK_RSS_MIB:.0f} MiB",
            f"{stack_rss:.1f} MiB",
            stack_rss <= GOAL_STACK_RSS_MIB,
        ),
    ]
    print("\ngoals")
    for name, measured, met in goals:
        print(f"  {'PASS' if met else 'MISS'}  {name:<30} measured {measured}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------- main


def run(seconds: float, warmup: float) -> None:
    ports = Ports(*free_ports(4))
    with tempfile.TemporaryDirectory(prefix="autarky-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        up_log = Path(tmp) / "autarky-up.log"
        print(
            f"autarky up: data dir {data_dir}, server 127.0.0.1:{ports.server}, UI {ports.ui}, "
            f"metrics {ports.metrics}, SDK metrics {ports.sdk_metrics}"
        )
        with up_log.open("wb") as log:
            up = subprocess.Popen(
                [str(BIN / "autarky"), "up"],
                cwd=tmp,
                env=stack_env(data_dir, ports),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our SIGINT, not the terminal's, stops it
            )
        try:
            window = start_and_measure(up, data_dir, ports, seconds, warmup)
        except BaseException:
            print(f"--- last lines of {up_log.name} ---\n{tail(up_log)}", file=sys.stderr)
            print(f"--- temporal.log ---\n{tail(data_dir / 'logs' / 'temporal.log')}", file=sys.stderr)
            raise
        finally:
            print("stopping: " + stop_stack(up, data_dir))
    print_report(window)
    print_goals(window.watched, window.wall_seconds)


def start_and_measure(
    up: subprocess.Popen[bytes], data_dir: Path, ports: Ports, seconds: float, warmup: float
) -> Window:
    address = f"127.0.0.1:{ports.server}"
    ready = asyncio.run(wait_for_autopilot(address, up, READY_TIMEOUT_SECONDS))
    print(f"autopilot running and answering {ready:.1f} s after start; warming up for {warmup:.0f} s")
    time.sleep(warmup)
    if up.poll() is not None:
        raise RuntimeError(f"`autarky up` exited with code {up.returncode} during the warm-up")

    watched = [Watched("worker (autarky up)", psutil.Process(up.pid))]
    for pid_file in sorted((data_dir / "pool").glob("member-*.pid")):
        if member := read_pid(pid_file):
            watched.append(Watched(f"pool {pid_file.stem}", member))
    if server := read_pid(data_dir / "temporal.pid"):
        watched.append(Watched("temporal server", server))

    before = asyncio.run(query_status(address))
    print(f"measuring {len(watched)} processes for {seconds:.0f} s …")
    window = measure(watched, seconds)
    after = asyncio.run(query_status(address))
    window.notes.append(
        f"autopilot: {after.iterations - before.iterations} loop iterations in the window "
        f"({after.iterations} in all, state {after.state!r}, totals {after.totals or {}})"
    )
    print(metric_families(ports.metrics))
    print(metric_families(ports.sdk_metrics))
    return window


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window (default 60)")
    parser.add_argument("--warmup", type=float, default=15.0, help="settling time after start (default 15)")
    args = parser.parse_args()
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be > 0 and --warmup >= 0")
    run(args.seconds, args.warmup)


if __name__ == "__main__":
    main()
