"""The `autarky` CLI as a person runs it (a subprocess) against the running test server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from autarky.temporal import AUTOPILOT_WORKFLOW_ID
from autarky.types import ApprovalRequest, ApprovalState, Finding
from tests.fakes import FakeHost
from tests.test_autopilot import Harness, eventually, fast_settings, pending

AUTARKY = str(Path(sys.executable).parent / "autarky")


async def cli(env: WorkflowEnvironment, *args: str) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AUTARKY_", "TEMPORAL_"))}
    environ |= {"TEMPORAL_ADDRESS": env.client.service_client.config.target_host, "COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        AUTARKY, *args, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_status_approvals_and_approve(env: WorkflowEnvironment, client: Client, tmp_path: Path) -> None:
    harness = Harness(client, tmp_path, FakeHost(memory=90.0))
    harness.workflow_id = AUTOPILOT_WORKFLOW_ID  # the CLI's default target
    async with harness.running(fast_settings()) as handle:
        request = (await eventually(lambda: pending(handle)))[0]

        code, out = await cli(env, "status")
        assert code == 0, out
        assert "Autopilot: waiting for approval" in out and "memory_percent averaged 90.0%" in out

        code, out = await cli(env, "approvals")
        assert code == 0 and request.approval_id in out and AUTOPILOT_WORKFLOW_ID in out, out

        code, out = await cli(env, "approve", "apr-nope", "--reason", "typo")
        assert code == 1 and "no approval with id 'apr-nope'" in out, out

        code, out = await cli(
            env, "approve", request.approval_id, "--reason", "looks safe", "--approver", "erin"
        )
        assert code == 0 and f"{request.approval_id}: approved by erin" in out, out
        approvals = await handle.query("approvals", result_type=list[ApprovalRequest])
        decided = next(a for a in approvals if a.approval_id == request.approval_id)
        assert decided.state == ApprovalState.APPROVED and decided.decision_reason == "looks safe"

        code, out = await cli(env, "reject", request.approval_id, "--approver", "frank")
        assert code == 1 and "already approved by erin" in out, out

        code, out = await cli(env, "actions", "--count", "5")
        assert code == 0 and "restart_worker_pool" in out, out


async def test_status_without_a_server_is_a_clear_error(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AUTARKY_", "TEMPORAL_"))}
    environ["TEMPORAL_ADDRESS"] = "127.0.0.1:1"
    process = await asyncio.create_subprocess_exec(
        AUTARKY, "status", env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode == 1
    assert "Traceback" not in out.decode() and "127.0.0.1:1" in out.decode()


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
