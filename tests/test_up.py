"""`autarky up` end to end: embedded server, worker, schedules and autopilot; a restart resumes state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from autarky.autopilot.types import AutopilotStatus
from autarky.core import search_attributes as sa
from autarky.core.temporal import AUTOPILOT_WORKFLOW_ID

AUTARKY = str(Path(sys.executable).parent / "autarky")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AUTARKY_", "TEMPORAL_"))}
    return environ | {
        "AUTARKY_DATA_DIR": str(tmp_path / "data"),
        "AUTARKY_SERVER_PORT": str(free_port()),
        "AUTARKY_UI_PORT": str(free_port()),
        "AUTARKY_METRICS_PORT": str(free_port()),
        "AUTARKY_SDK_METRICS_PORT": str(free_port()),
        "AUTARKY_WORKER_POOL_SIZE": "1",
        "AUTARKY_AUTOPILOT__MONITOR_INTERVAL": "0.5",
        "AUTARKY_AUTOPILOT__EXECUTOR_INTERVAL": "0.5",
        # The loop itself wakes for host discovery (its hosts' watchers probe): iterations come this often.
        "AUTARKY_AUTOPILOT__HOST_DISCOVERY_INTERVAL": "1",
        # The real host is probed: on a busy machine its CPU would grow the pool (scaling) or restart it
        # (cpu_high), and the pool would not stay the one member this test starts and counts.
        "AUTARKY_AUTOPILOT__POOL_SCALING": "false",
        "AUTARKY_AUTOPILOT__RULES__CPU_PERCENT": "100",
    }


async def start_stack(environ: dict[str, str]) -> asyncio.subprocess.Process:
    """`autarky up` with its output going to a file, as a person's terminal takes it: a pipe this test
    read only at the end would fill up and block the stack's logging."""
    log = Path(environ["AUTARKY_DATA_DIR"]).parent / "up.out"
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            AUTARKY, "up", env=environ, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
        )


async def stop_stack(process: asyncio.subprocess.Process, data_dir: Path) -> str:
    """Ctrl-C, as a person would; if that fails, kill what the stack left so no test leaks processes.
    Returns what this run of the stack wrote."""
    log = data_dir.parent / "up.out"
    process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
        for pid_file in [data_dir / "temporal.pid", *(data_dir / "pool").glob("member-*.pid")]:
            with contextlib.suppress(OSError, ValueError, psutil.Error):
                left = psutil.Process(int(pid_file.read_text()))
                # A stale file's pid may by now be another program's (a database backend): only ours go.
                if any("autarky" in part or "temporal" in part for part in left.cmdline()):
                    left.kill()
    out = log.read_text(errors="replace")
    log.unlink()  # the next run's output starts afresh
    assert process.returncode == 0, out[-3000:]
    return out


async def autopilot_status(environ: dict[str, str], min_iterations: int) -> tuple[Client, AutopilotStatus]:
    address = f"127.0.0.1:{environ['AUTARKY_SERVER_PORT']}"
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            client = await Client.connect(address, data_converter=pydantic_data_converter)
            status = await client.get_workflow_handle(AUTOPILOT_WORKFLOW_ID).query(
                "status", result_type=AutopilotStatus
            )
            if status.iterations >= min_iterations:
                return client, status
        except Exception:  # not up yet: the server or the workflow is still starting
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_up_brings_the_stack_and_a_second_up_resumes_it(stack_env: dict[str, str]) -> None:
    data_dir = Path(stack_env["AUTARKY_DATA_DIR"])
    process = await start_stack(stack_env)
    try:
        client, first = await autopilot_status(stack_env, min_iterations=2)
        handle = client.get_workflow_handle(AUTOPILOT_WORKFLOW_ID)
        description = await handle.describe()
        after = await handle.query("status", result_type=AutopilotStatus)
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.typed_search_attributes.get(sa.KIND) == "autopilot"
        # The real host decides whether something waits for approval (a nearly full disk does);
        # the search attribute must agree with the workflow's own count either way.
        consistent = {"pending" if s.pending_approvals else "none" for s in (first, after)}
        assert description.typed_search_attributes.get(sa.APPROVAL) in consistent
        metadata = await client.get_workflow_handle(AUTOPILOT_WORKFLOW_ID).query(
            "__temporal_workflow_metadata", result_type=WorkflowMetadata
        )  # what the UI shows
        assert "**Autopilot** running" in metadata.current_details
        assert {q.name for q in metadata.definition.query_definitions} >= {
            "status",
            "goals",
            "pending_approvals",
        }
        pool_pids = list((data_dir / "pool").glob("member-*.pid"))
        assert len(pool_pids) == 1
        run_id = description.run_id
    finally:
        first_log = await stop_stack(process, data_dir)
    assert "Autarky is up" in first_log
    assert not list((data_dir / "pool").glob("member-*.pid")), "pool members were not stopped"
    assert (data_dir / "temporal.db").exists()

    process = await start_stack(stack_env)
    try:
        client, second = await autopilot_status(stack_env, min_iterations=first.iterations + 2)
        description = await client.get_workflow_handle(AUTOPILOT_WORKFLOW_ID).describe()
        assert description.run_id == run_id  # the same execution resumed: nothing lost, nothing duplicated
        assert second.started_at == first.started_at
        schedules = [s.id async for s in await client.list_schedules()]
        assert schedules.count("autarky-housekeeping") == 1
        running = [w.id async for w in client.list_workflows('ExecutionStatus = "Running"')]
        assert running.count(AUTOPILOT_WORKFLOW_ID) == 1
    finally:
        second_log = await stop_stack(process, data_dir)
    assert "schedules synced" in second_log and "updated" in second_log
