"""The AWS provider's worker killed in the middle of a call: the saga ends with one change or one undo.

The scaler's workflow worker runs here; the provider (the real AwsScalingActivities, boto3 against a moto
server through tests/moto_server.FaultProxy, which counts the calls) runs in a subprocess,
tests/aws_provider_worker.py. That worker stalls right after EC2 has answered the chosen call (RunInstances
or TerminateInstances), inside the activity, and is killed with SIGKILL there: the call took effect in EC2,
the activity never returned. A replacement worker without the stall takes the retry, which Temporal
schedules once the activity's heartbeat timeout (30 s, AWS_HEARTBEAT_TIMEOUT in workflows/scaling.py, not
configurable) has passed: so each test takes more than 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.infra.aws_scaling import GROUP_TAG, REQUEST_TAG
from autarky.scaling.policy_types import ResourceRef, ScalingPolicy
from autarky.scaling.types import OperationStatus, SagaStep, ScaleOperation, ScalerInput
from tests.moto_server import FaultProxy, moto_server
from tests.test_autopilot import eventually
from tests.test_aws_scaling import IMAGE, unique
from tests.test_aws_scaling import aws as aws
from tests.test_scaler import scale, status
from tests.worker_process import spawn_worker
from workflows.scaling import ScalerWorkflow

SEEDED = "seeded-by-the-test"  # the request tag of the instances that were there before the change


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto) as running:
        yield running


def seed(aws: SimpleNamespace, group: str, count: int) -> set[str]:
    """Instances of the group that were there before the scaler: an undo must never touch them."""
    tags = [{"Key": GROUP_TAG, "Value": group}, {"Key": REQUEST_TAG, "Value": SEEDED}]
    created = aws.ec2.run_instances(
        ImageId=IMAGE,
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    return {i["InstanceId"] for i in created}


def instances(aws: SimpleNamespace, group: str) -> dict[str, dict[str, Any]]:
    """Every instance ever launched into the group, in any state (moto keeps terminated ones listed)."""
    pages = aws.ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{GROUP_TAG}", "Values": [group]}]
    )
    return {i["InstanceId"]: i for page in pages for r in page["Reservations"] for i in r["Instances"]}


def request_of(instance: dict[str, Any]) -> str:
    return next(t["Value"] for t in instance["Tags"] if t["Key"] == REQUEST_TAG)


def state(instance: dict[str, Any]) -> str:
    return str(instance["State"]["Name"])


async def spawn_provider(
    client: Client, queue: str, endpoint: str, stall_after: str | None = None
) -> asyncio.subprocess.Process:
    args = [
        client.service_client.config.target_host,
        queue,
        endpoint,
        *([stall_after] if stall_after else []),
    ]
    return await spawn_worker("tests.aws_provider_worker", *args)


async def kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)  # as kill -9, or a lost machine: no heartbeat, no last word
    await process.wait()


@asynccontextmanager
async def ec2_scaler(
    client: Client, group: str, provider_queue: str, health_poll_interval: timedelta
) -> AsyncIterator[WorkflowHandle]:
    """A scaler of `aws-ec2/<group>` whose workflow worker runs here; its provider is up to the test."""
    workflow_queue = f"{provider_queue}-workflow"
    input = ScalerInput(
        resource=ResourceRef.parse(f"aws-ec2/{group}"),
        policy=ScalingPolicy(min_capacity=0, max_capacity=10, cooldown=timedelta(0), blast_radius=5.0),
        provider_task_queue=provider_queue,
        # Moto's instances run at once: only a stalled saga would reach this.
        health_timeout=timedelta(minutes=5),
        health_poll_interval=health_poll_interval,
    )
    async with Worker(client, task_queue=workflow_queue, workflows=[ScalerWorkflow]):
        handle = await client.start_workflow(
            ScalerWorkflow.run, input, id=input.resource.workflow_id, task_queue=workflow_queue
        )
        try:
            yield handle
        finally:
            await handle.terminate("test finished")


async def set_capacity_attempts(handle: WorkflowHandle) -> list[tuple[int, int]]:
    """Each set_capacity_aws call of the history: the attempt that completed it, and how the one before
    it ended (a TimeoutType, 0 when there was none)."""
    history = await handle.fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    attempts = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            continue
        started = event.activity_task_started_event_attributes
        if scheduled[started.scheduled_event_id] == "set_capacity_aws":
            failure = started.last_failure if started.HasField("last_failure") else None
            previous = failure.timeout_failure_info.timeout_type if failure is not None else 0
            attempts.append((started.attempt, previous))
    return attempts


class Crash:
    """The provider worker that stalls after `stall_after` and is killed there, then its replacement."""

    def __init__(self, client: Client, queue: str, endpoint: str) -> None:
        self.client, self.queue, self.endpoint = client, queue, endpoint
        self.workers: list[asyncio.subprocess.Process] = []

    async def start(self, stall_after: str) -> None:
        self.workers.append(await spawn_provider(self.client, self.queue, self.endpoint, stall_after))

    async def kill_and_finish(
        self, running: asyncio.Task[ScaleOperation], handle: WorkflowHandle
    ) -> tuple[ScaleOperation, list[ScaleOperation], list[tuple[int, int]]]:
        """Kill the stalled provider, start its replacement, and wait for the saga's end: the operation,
        the scaler's operations and the set_capacity attempts."""
        assert not running.done()
        await kill(self.workers[0])
        self.workers.append(await spawn_provider(self.client, self.queue, self.endpoint))
        done = await asyncio.wait_for(running, 180)
        return done, await handle.query(ScalerWorkflow.operations), await set_capacity_attempts(handle)

    def stop(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()


@pytest.mark.slow
async def test_a_provider_killed_after_run_instances_leaves_exactly_one_launch(
    client: Client, aws: SimpleNamespace, proxy: FaultProxy
) -> None:
    group, queue = unique("crash-apply"), f"provider-crash-{uuid.uuid4().hex[:8]}"
    before = seed(aws, group, 2)
    crash = Crash(client, queue, proxy.url)
    try:
        await crash.start(stall_after="RunInstances")
        async with ec2_scaler(
            client, group, queue, health_poll_interval=timedelta(milliseconds=300)
        ) as handle:
            running = asyncio.create_task(scale(handle, 4))

            async def launched() -> dict[str, dict[str, Any]]:
                found = await asyncio.to_thread(instances, aws, group)
                return {k: v for k, v in found.items() if k not in before}

            new = await eventually(launched)  # RunInstances took effect; the activity is stalled after it
            done, operations, attempts = await crash.kill_and_finish(running, handle)
    finally:
        crash.stop()
    everything = await asyncio.to_thread(instances, aws, group)

    assert done.status == OperationStatus.SUCCEEDED, done.detail
    assert (done.previous, done.reached) == (2, 4) and len(operations) == 1
    # The apply ran twice (killed, then retried after the heartbeat timeout) and launched once.
    assert attempts == [(2, TimeoutType.TIMEOUT_TYPE_HEARTBEAT)]
    assert proxy.requests["RunInstances"] == 1
    assert len(everything) == 4 and set(everything) - before == set(new) and len(new) == 2
    assert len({request_of(i) for i in new.values()}) == 1
    assert request_of(next(iter(new.values()))).endswith("-apply")
    assert {state(i) for i in everything.values()} == {"running"}


@pytest.mark.slow
async def test_a_provider_killed_after_terminate_instances_leaves_exactly_one_undo(
    client: Client, aws: SimpleNamespace, proxy: FaultProxy
) -> None:
    group, queue = unique("crash-undo"), f"provider-crash-{uuid.uuid4().hex[:8]}"
    before = seed(aws, group, 2)
    crash = Crash(client, queue, proxy.url)
    try:
        await crash.start(stall_after="TerminateInstances")
        # The verification waits long after the instances run: the cancel arrives in that wait.
        async with ec2_scaler(client, group, queue, health_poll_interval=timedelta(minutes=10)) as handle:
            running = asyncio.create_task(scale(handle, 4))

            async def verifying() -> bool:
                current = (await status(handle)).current
                return current is not None and current.step == SagaStep.VERIFYING

            await eventually(verifying)
            new = set(await asyncio.to_thread(instances, aws, group)) - before
            await handle.signal(ScalerWorkflow.cancel_operation, "the test undoes the change")

            async def terminating() -> bool:
                found = await asyncio.to_thread(instances, aws, group)
                return all(state(found[k]) in ("shutting-down", "terminated") for k in new)

            await eventually(terminating)  # TerminateInstances took effect; the undo is stalled after it
            done, operations, attempts = await crash.kill_and_finish(running, handle)
    finally:
        crash.stop()
    everything = await asyncio.to_thread(instances, aws, group)

    assert done.status == OperationStatus.COMPENSATED, done.detail
    assert "the test undoes the change" in done.detail
    assert (done.previous, done.reached) == (2, 2) and len(operations) == 1
    # The apply once; the undo killed once and retried after the heartbeat timeout.
    assert attempts == [(1, 0), (2, TimeoutType.TIMEOUT_TYPE_HEARTBEAT)]
    assert proxy.requests["RunInstances"] == 1 and proxy.requests["TerminateInstances"] == 1
    assert len(new) == 2 and set(everything) == before | new
    assert {k for k, i in everything.items() if state(i) in ("shutting-down", "terminated")} == new
    assert {state(everything[k]) for k in before} == {"running"}
