"""`autarky scale status|set|history` and the Python client's scaling methods, against the test server.

The CLI runs as a person runs it (a subprocess, tests.test_cli.cli) with its settings in AUTARKY_…
variables: a unique task queue, on which a worker of this test runs `ScalerWorkflow` and the fake
provider's activities (an AWS resource's provider queue is the settings' task queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from autarky.client import AutarkyClient
from autarky.core.settings import AutarkySettings
from autarky.scaling.client import ScaleRefused
from autarky.scaling.policy_types import ScalingPolicy
from autarky.scaling.scalers import UnknownResource
from autarky.scaling.settings import ScalableResource, ScalingSettings
from autarky.scaling.types import OperationStatus
from tests.scaler_fakes import FakeResource, fake_input
from tests.test_autopilot import eventually
from tests.test_cli import cli, table_rows
from workflows.scaling import ScalerWorkflow

NOT_STARTED = "not started (starts on the first request)"
# A wide blast radius: no change here waits for a person's approval.
# The cooldown must outlast three CLI processes starting at once on a busy machine (the refusals below
# assume they reach the scaler inside it); `--queue` then waits for its end.
COOLDOWN_S = 20
POLICY = {"min_capacity": 1, "max_capacity": 5, "cooldown": f"{COOLDOWN_S}s", "blast_radius": 10}


@dataclass
class Scaling:
    """Two configured AWS resources (`web` is scaled, `idle` never is) and this host's local pool."""

    env: WorkflowEnvironment
    client: Client
    fake: FakeResource
    health_timeout: str = "3s"
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    started: list[str] = field(default_factory=list)  # other scalers a test starts

    def __post_init__(self) -> None:
        self.web = f"aws-asg/cli-web-{self.suffix}"
        self.idle = f"aws-asg/cli-idle-{self.suffix}"
        self.pool = f"local-pool/cli-host-{self.suffix}"
        self.queue = f"cli-scale-{self.suffix}"
        resources = [{"resource": r, "policy": POLICY} for r in (self.web, self.idle)]
        self.environ = {
            "AUTARKY_TASK_QUEUE": self.queue,
            "AUTARKY_HOST_ID": f"cli-host-{self.suffix}",
            "AUTARKY_SCALING__RESOURCES": json.dumps(resources),
            "AUTARKY_SCALING__HEALTH_POLL_INTERVAL": "0.2",
            "AUTARKY_SCALING__HEALTH_TIMEOUT": self.health_timeout,
        }
        # The same configuration for the Python client in this process.
        self.settings = AutarkySettings(
            task_queue=self.queue,
            host_id=f"cli-host-{self.suffix}",
            scaling=ScalingSettings(
                resources=[
                    ScalableResource(resource=r, policy=ScalingPolicy.model_validate(POLICY))
                    for r in (self.web, self.idle)
                ],
                health_poll_interval=timedelta(milliseconds=200),
                health_timeout=timedelta(seconds=float(self.health_timeout.removesuffix("s"))),
            ),
        )

    async def cli(self, *args: str) -> tuple[int, str]:
        return await cli(self.env, *args, **self.environ)

    async def exists(self, resource: str) -> bool:
        try:
            await self.client.get_workflow_handle(f"scaler/{resource}").describe()
        except RPCError as error:
            assert error.status == RPCStatusCode.NOT_FOUND, error
            return False
        return True


@asynccontextmanager
async def scaling(
    env: WorkflowEnvironment, client: Client, fake: FakeResource, **kw: Any
) -> AsyncIterator[Scaling]:
    setup = Scaling(env, client, fake, **kw)
    worker = Worker(
        client,
        task_queue=setup.queue,
        workflows=[ScalerWorkflow],
        activities=[fake.read_capacity, fake.set_capacity],
    )
    async with worker:
        try:
            yield setup
        finally:
            for resource in (setup.web, setup.idle, setup.pool, *setup.started):
                with contextlib.suppress(RPCError):  # never started, as most of them
                    await client.get_workflow_handle(f"scaler/{resource}").terminate("test finished")


def row(out: str, resource: str) -> list[str]:
    return next(r for r in table_rows(out) if r and r[0] == resource)


async def _listed(s: Scaling, resource: str) -> list[str] | None:
    code, out = await s.cli("scale", "status")
    assert code == 0, out
    rows = [r for r in table_rows(out) if r and r[0] == f"{resource} (not configured here)"]
    return rows[0] if rows else None


@pytest.mark.slow
async def test_set_status_refusals_queue_and_history(env: WorkflowEnvironment, client: Client) -> None:
    fake = FakeResource(desired=1)
    async with scaling(env, client, fake) as s:
        code, out = await s.cli("scale", "set", s.web, "3", "--reason", "peak traffic", "--by", "alice")
        assert (code, out) == (0, f"scaler/{s.web}/1 succeeded: 1 → 3, healthy\n")
        assert fake.desired == 3

        # Inside the cooldown (COOLDOWN_S from the change): the status, and two requests the scaler refuses.
        (code, status), (refused_code, refused), (bounds_code, bounds) = await asyncio.gather(
            s.cli("scale", "status"),
            s.cli("scale", "set", s.web, "4", "--reason", "more"),
            s.cli("scale", "set", s.web, "9", "--reason", "much more"),
        )
        assert code == 0, status
        _, capacity, bounds_cell, cooldown, step, last, queued, approvals = row(status, s.web)
        assert (capacity, bounds_cell, step, queued, approvals) == ("3/3", "1–5", "idle", "0", "0"), status
        assert cooldown.endswith(" s") and 0 < int(cooldown.removesuffix(" s")) <= COOLDOWN_S, status
        assert last == "succeeded: 1 → 3, healthy", status
        assert row(status, s.idle)[1:3] == [NOT_STARTED, "1–5"], status  # configured, never asked
        assert row(status, s.pool)[1] == NOT_STARTED, status  # this host's pool
        assert not await s.exists(s.idle)

        assert refused_code == 1 and len(refused.splitlines()) == 1, refused
        assert refused.startswith(f"refused: {s.web} is cooling down:") and "--queue" in refused, refused
        assert bounds_code == 1, bounds
        assert bounds == f"refused: 9 is outside the bounds of {s.web}: 1–5\n"
        assert fake.desired == 3 and len(fake.changes) == 1  # refused requests change nothing

        # --queue waits for the cooldown's end, then runs (the scaler's id form names the resource too).
        code, out = await s.cli(
            "scale", "set", f"scaler/{s.web}", "4", "-r", "later", "--queue", "--by", "bob"
        )
        assert (code, out) == (0, f"scaler/{s.web}/2 succeeded: 3 → 4, healthy\n")
        handle = client.get_workflow_handle(f"scaler/{s.web}")
        first, second = await handle.query(ScalerWorkflow.operations)
        assert first.started_at is not None and second.started_at is not None
        assert second.started_at - first.started_at >= timedelta(seconds=COOLDOWN_S)

        code, out = await s.cli("scale", "history", s.web)
        assert code == 0, out
        rows = [r for r in table_rows(out) if r[0].startswith("scaler/")]
        assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows] == [
            (f"scaler/{s.web}/1", "succeeded", "1 → 3", "alice", "peak traffic"),
            (f"scaler/{s.web}/2", "succeeded", "3 → 4", "bob", "later"),
        ], out
        code, out = await s.cli("scale", "history", s.web, "--count", "1")
        assert code == 0 and [r[0] for r in table_rows(out) if r[0].startswith("scaler/")] == [
            f"scaler/{s.web}/2"
        ], out
        code, out = await s.cli("scale", "history", s.idle)
        assert (code, out) == (0, f"scaler/{s.idle}: no operations yet\n")

        # The Python client: the same scalers, typed; a refusal is ScaleRefused with the scaler's reason.
        autarky = AutarkyClient(client, s.settings)
        summaries = {x.resource.id: x for x in await autarky.scalers()}
        web, idle, pool = summaries[s.web], summaries[s.idle], summaries[s.pool]
        assert web.running and web.status is not None and web.status.capacity == 4
        assert web.status.last is not None and web.status.last.operation_id == f"scaler/{s.web}/2"
        assert not idle.running and idle.status is None and idle.policy is not None
        assert not pool.running
        with pytest.raises(ScaleRefused) as error:
            await autarky.scale(s.web, 0, reason="off", requested_by="carol")
        assert (
            error.value.resource == s.web and str(error.value) == f"0 is outside the bounds of {s.web}: 1–5"
        )
        operations = await autarky.scale_operations(s.web, count=5)
        assert [o.status for o in operations] == [OperationStatus.SUCCEEDED] * 2

        # A running scaler this configuration does not name (found by AutarkyKind) is listed too.
        other = fake_input(s.queue, min_capacity=0, max_capacity=7)
        s.started.append(other.resource.id)
        await client.start_workflow(
            ScalerWorkflow.run, other, id=other.resource.workflow_id, task_queue=s.queue
        )
        listed = await eventually(lambda: _listed(s, other.resource.id))
        assert listed[1:3] == ["4/4", "0–7"], listed  # the fake's capacity, the scaler's own bounds


async def test_a_compensated_change_exits_nonzero(env: WorkflowEnvironment, client: Client) -> None:
    fake = FakeResource(desired=2, never_healthy=True)
    async with scaling(env, client, fake, health_timeout="1s") as s:
        code, out = await s.cli("scale", "set", s.web, "3", "--reason", "peak traffic")
    assert code == 1 and len(out.splitlines()) == 1, out
    assert out.startswith(f"scaler/{s.web}/1 compensated: back to 2: not healthy within"), out
    assert fake.desired == 2


async def test_an_unknown_resource_is_named_and_nothing_starts(
    env: WorkflowEnvironment, client: Client
) -> None:
    async with scaling(env, client, FakeResource()) as s:
        unknown = f"aws-asg/cli-nope-{s.suffix}"
        code, out = await s.cli("scale", "set", unknown, "2", "--reason", "typo")
        configured = ", ".join(sorted([s.idle, s.web, s.pool]))
        assert (code, out) == (
            1,
            f"no scaler is configured for {unknown} (configured: {configured}); "
            "add it to [[scaling.resources]] in autarky.toml\n",
        )
        assert not await s.exists(unknown)
        code, out = await s.cli("scale", "history", unknown)
        assert code == 1 and out.startswith(f"no scaler is configured for {unknown}"), out

        code, out = await s.cli("scale", "set", "gcp-mig/web", "2", "--reason", "typo")
        assert code == 1 and out.startswith("unknown resource kind 'gcp-mig'"), out

        # A configured resource whose scaler starts with a refused request (out of bounds).
        code, out = await s.cli("scale", "set", s.idle, "9", "--reason", "typo")
        assert (code, out) == (1, f"refused: 9 is outside the bounds of {s.idle}: 1–5\n")

        with pytest.raises(UnknownResource):
            await AutarkyClient(client, s.settings).scale(unknown, 2, reason="typo", requested_by="t")
        assert not await s.exists(unknown)


async def test_reason_and_capacity_are_checked_before_the_server_is_contacted() -> None:
    offline = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}  # contacting it would say "no Temporal server"
    reason_missing = '--reason is required and must not be empty: say why, e.g. --reason "peak traffic"\n'
    for args in (["local-pool", "2"], ["local-pool", "2", "--reason", " "]):
        assert await cli(None, "scale", "set", *args, **offline) == (2, reason_missing), args
    code, out = await cli(None, "scale", "set", "local-pool", "-1", "--reason", "x", **offline)
    assert code == 2 and "no Temporal server" not in out, out
    code, out = await cli(None, "scale", "set", "local-pool", "2", "--reason", "x", "--by", " ", **offline)
    assert (code, out) == (2, "--by must name who asks (default: your user name)\n")
    # An unknown resource is named without the server, too.
    code, out = await cli(None, "scale", "set", "aws-asg/nope", "2", "--reason", "x", **offline)
    assert code == 1 and out.startswith("no scaler is configured for aws-asg/nope"), out
