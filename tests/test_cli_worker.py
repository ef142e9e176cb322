"""`autarky worker` beside `autarky up`: metrics ports already taken cost the endpoints, not the worker."""

from __future__ import annotations

import asyncio
import signal
import socket
import uuid
from collections.abc import Awaitable
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.test_autopilot import eventually
from tests.test_cli import AUTARKY, cli_environ


def taken_port() -> socket.socket:
    """A listening socket on a free port of 127.0.0.1, as `autarky up` holds its metrics ports."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def pollers(client: Client, task_queue: str) -> list[str]:
    identities = []
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
            )
        )
        identities += [p.identity for p in response.pollers]
    return identities


async def test_worker_goes_on_without_metrics_ports_that_are_taken(
    env: WorkflowEnvironment, client: Client, tmp_path: Path
) -> None:
    task_queue = f"cli-worker-{uuid.uuid4().hex[:8]}"
    with taken_port() as sdk_port, taken_port() as autarky_port:
        sdk, own = sdk_port.getsockname()[1], autarky_port.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            AUTARKY,
            "worker",
            env=cli_environ(
                env,
                AUTARKY_TASK_QUEUE=task_queue,
                AUTARKY_DATA_DIR=str(tmp_path),
                AUTARKY_SDK_METRICS_PORT=str(sdk),
                AUTARKY_METRICS_PORT=str(own),
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            polling = await eventually(
                lambda: _of_process(pollers(client, task_queue), process.pid), timeout=30
            )
            assert process.returncode is None
            process.send_signal(signal.SIGINT)  # Ctrl-C: an orderly stop
            out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    log = out.decode()
    assert polling and process.returncode == 0, log[-3000:]
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    sdk_warnings = [w for w in warnings if f"127.0.0.1:{sdk} (" in w and "AUTARKY_SDK_METRICS_PORT" in w]
    own_warnings = [w for w in warnings if f"127.0.0.1:{own} (" in w and "AUTARKY_METRICS_PORT" in w]
    assert len(sdk_warnings) == 1 and len(own_warnings) == 1, log[-3000:]
    assert "Traceback" not in log


async def _of_process(identities: Awaitable[list[str]], pid: int) -> list[str]:
    return [i for i in await identities if i.startswith(f"{pid}@")]  # identity: <pid>@<host>
