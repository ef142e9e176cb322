"""The `autarky` CLI as a person runs it (a subprocess) against the running test server."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from autarky.autopilot.types import Goal
from autarky.core.approval import ApprovalRequest, ApprovalState
from autarky.core.findings import Finding
from autarky.core.temporal import AUTOPILOT_WORKFLOW_ID
from tests.fakes import FakeHost
from tests.test_autopilot import Harness, eventually, fast_settings, pending

AUTARKY = str(Path(sys.executable).parent / "autarky")
NO_SERVER = "no Temporal server at {}: start it with `make run`, or set TEMPORAL_ADDRESS"


def cli_environ(env: WorkflowEnvironment | None, **extra: str) -> dict[str, str]:
    """This process's environment without Autarky's or Temporal's settings, aimed at the test server."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AUTARKY_", "TEMPORAL_"))}
    if env is not None:
        environ["TEMPORAL_ADDRESS"] = env.client.service_client.config.target_host
    return environ | {"COLUMNS": "200"} | extra


async def cli(env: WorkflowEnvironment | None, *args: str, **extra_env: str) -> tuple[int, str]:
    """Run `autarky ARGS` as a person does; (exit code, stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        AUTARKY,
        *args,
        env=cli_environ(env, **extra_env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def table_rows(out: str) -> list[list[str]]:
    """The body rows of a rich table in `out`, as lists of stripped cells."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if "│" in line]


async def test_status_approvals_and_approve(env: WorkflowEnvironment, client: Client, tmp_path: Path) -> None:
    harness = Harness(client, tmp_path, FakeHost(memory=90.0))
    harness.workflow_id = AUTOPILOT_WORKFLOW_ID  # the CLI's default target
    async with harness.running(fast_settings()) as handle:
        request = (await eventually(lambda: pending(handle)))[0]

        code, out = await cli(env, "status")
        assert code == 0, out
        assert "Autopilot: waiting for approval" in out and "memory_percent averaged 90.0%" in out
        assert "host test-host" in out and "[test-host] memory_percent" in out  # each host named

        code, out = await cli(env, "approvals")
        assert code == 0 and request.approval_id in out and AUTOPILOT_WORKFLOW_ID in out, out
        assert "restart_worker_pool on test-host" in out, out

        code, out = await cli(env, "approve", "apr-nope", "--reason", "typo")
        assert code == 1 and "no approval with id 'apr-nope'" in out, out

        approve = ("approve", request.approval_id, "--reason", "looks safe", "--approver", "erin")
        code, out = await cli(env, *approve)
        assert code == 0 and out.strip() == f"{request.approval_id}: approved by erin", out
        approvals = await handle.query("approvals", result_type=list[ApprovalRequest])
        decided = next(a for a in approvals if a.approval_id == request.approval_id)
        assert decided.state == ApprovalState.APPROVED and decided.decision_reason == "looks safe"

        # A retry of the same command (e.g. its answer was lost) is the same update: de-duplicated by the
        # server, which answers with the first result instead of refusing it as already decided.
        code, out = await cli(env, *approve)
        assert code == 0 and out.strip() == f"{request.approval_id}: approved by erin", out
        completed = [
            e
            async for e in handle.fetch_history_events()
            if e.HasField("workflow_execution_update_completed_event_attributes")
            and e.workflow_execution_update_completed_event_attributes.meta.update_id
            == f"approve:{request.approval_id}"
        ]
        assert len(completed) == 1  # ran once

        code, out = await cli(
            env, "reject", request.approval_id, "--reason", "changed my mind", "--approver", "frank"
        )
        assert code == 1 and out.startswith(
            f"refused: approval {request.approval_id!r} was already approved"
        ), out
        assert "already approved by erin" in out

        code, out = await cli(env, "actions", "--count", "5")
        assert code == 0 and "restart_worker_pool" in out, out


async def test_status_without_a_server_is_a_clear_error(tmp_path: Path) -> None:
    code, out = await cli(None, "status", TEMPORAL_ADDRESS="127.0.0.1:1")
    assert code == 1
    assert out == NO_SERVER.format("127.0.0.1:1") + "\n"  # one line, no transport error dump


async def test_every_client_command_names_the_address_it_tried(tmp_path: Path) -> None:
    """Without TEMPORAL_ADDRESS the embedded server's address (AUTARKY_SERVER_IP/PORT) is the one tried."""
    commands = [
        ["approvals"],
        ["goals"],
        ["actions"],
        ["findings"],
        ["approve", "apr-1", "--reason", "ok"],
        ["reject", "apr-1", "--reason", "no", "--snooze", "1h"],
        ["schedules", "sync"],
        ["schedules", "list"],
    ]
    results = await asyncio.gather(
        *(cli(None, *c, AUTARKY_SERVER_IP="127.0.0.1", AUTARKY_SERVER_PORT="1") for c in commands)
    )
    for command, (code, out) in zip(commands, results, strict=True):
        assert (code, out) == (1, NO_SERVER.format("127.0.0.1:1") + "\n"), command


async def test_goals_show_target_current_and_progress(
    env: WorkflowEnvironment, client: Client, tmp_path: Path
) -> None:
    harness = Harness(client, tmp_path, FakeHost(cpu=10.0, memory=95.0))
    harness.workflow_id = AUTOPILOT_WORKFLOW_ID
    async with harness.running(fast_settings(simulation=True)) as handle:
        await eventually(lambda: _all_measured(handle.query("goals", result_type=list[Goal])), timeout=60)
        code, out = await cli(env, "goals")
    assert code == 0, out
    rows = {row[0]: row[1:] for row in table_rows(out)}
    assert rows["cpu_percent"] == ["below 85", "10.0", "yes", "100%"], out
    assert rows["memory_percent"] == ["below 85", "95.0", "no", "89%"], out  # 85 / 95
    assert rows["disk_percent"] == ["below 85", "40.0", "yes", "100%"], out


async def _all_measured(goals: Awaitable[list[Goal]]) -> bool:
    host_metrics = {"cpu_percent", "memory_percent", "disk_percent"}  # latency depends on probe targets
    measured = [g.current is not None for g in await goals if g.metric in host_metrics]
    return bool(measured) and all(measured)  # none yet (no host reported) is not "all measured"


async def test_findings_lists_what_the_analyze_stage_sees(
    env: WorkflowEnvironment, client: Client, tmp_path: Path
) -> None:
    harness = Harness(client, tmp_path, FakeHost(disk=90.0))
    harness.workflow_id = AUTOPILOT_WORKFLOW_ID
    async with harness.running(fast_settings(simulation=True)) as handle:
        await eventually(lambda: handle.query("findings", result_type=list[Finding]))
        code, out = await cli(env, "findings")
    assert code == 0, out
    assert "disk_high" in out and "disk_percent averaged 90.0%" in out and "≤ 85" in out
    assert "test-host" in out
