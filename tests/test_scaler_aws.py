"""ScalerWorkflow with the real AWS provider, on moto's server mode: sagas over an ASG and an ECS service."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from types import SimpleNamespace

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.infra.aws_scaling import AwsScalingActivities
from autarky.scaling.policy_types import ResourceRef, ScalingPolicy
from autarky.scaling.types import OperationStatus, ScalerInput
from tests.moto_server import moto_server
from tests.test_aws_scaling import aws as aws
from tests.test_aws_scaling import described_group, make_group, settings
from tests.test_scaler import scale
from workflows.scaling import ScalerWorkflow


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@asynccontextmanager
async def aws_scaler(client: Client, endpoint: str, resource: str) -> AsyncIterator[WorkflowHandle]:
    queue = f"scaler-aws-{uuid.uuid4().hex[:8]}"
    provider = AwsScalingActivities(settings(endpoint))
    input = ScalerInput(
        resource=ResourceRef.parse(resource),
        policy=ScalingPolicy(min_capacity=0, max_capacity=10, cooldown=timedelta(0), blast_radius=5.0),
        provider_task_queue=queue,
        health_timeout=timedelta(seconds=3),
        health_poll_interval=timedelta(milliseconds=300),
    )
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[ScalerWorkflow],
        activities=[provider.read_capacity, provider.set_capacity],
    )
    async with worker:
        handle = await client.start_workflow(
            ScalerWorkflow.run, input, id=input.resource.workflow_id, task_queue=queue
        )
        try:
            yield handle
        finally:
            await handle.terminate("test finished")


async def test_an_asg_scales_up_and_down_through_the_saga(
    client: Client, moto: str, aws: SimpleNamespace
) -> None:
    group = make_group(aws, desired=1)
    async with aws_scaler(client, moto, f"aws-asg/{group}") as handle:
        up = await scale(handle, 3)
        assert described_group(aws, group) == (3, 3, 3)
        down = await scale(handle, 1)
    assert up.status == OperationStatus.SUCCEEDED and (up.previous, up.reached) == (1, 3), up.detail
    assert down.status == OperationStatus.SUCCEEDED and (down.previous, down.reached) == (3, 1)
    assert described_group(aws, group) == (1, 1, 1)


async def test_an_ecs_service_scales_up_and_down_through_the_saga(
    client: Client, moto: str, aws: SimpleNamespace
) -> None:
    cluster, service = f"c-{uuid.uuid4().hex[:6]}", "api"
    aws.ecs.create_cluster(clusterName=cluster)
    task = aws.ecs.register_task_definition(
        family=f"td-{cluster}", containerDefinitions=[{"name": "app", "image": "nginx", "memory": 128}]
    )["taskDefinition"]["taskDefinitionArn"]
    aws.ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=task, desiredCount=1)
    async with aws_scaler(client, moto, f"aws-ecs/{cluster}/{service}") as handle:
        up = await scale(handle, 3)
        down = await scale(handle, 0)
    described = aws.ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    assert up.status == OperationStatus.SUCCEEDED, up.detail
    assert down.status == OperationStatus.SUCCEEDED and down.previous == 3, down.detail
    assert described["desiredCount"] == 0


async def test_new_instances_that_never_turn_healthy_roll_the_group_back_exactly(
    client: Client, moto: str, aws: SimpleNamespace
) -> None:
    group = make_group(aws, desired=2)
    original = {i["InstanceId"] for i in _instances(aws, group)}
    stop = threading.Event()

    def fail_new_instances() -> None:  # every instance the scale-up launches fails its health check
        while not stop.is_set():
            for instance in _instances(aws, group):
                if instance["InstanceId"] not in original and instance["HealthStatus"] == "Healthy":
                    aws.autoscaling.set_instance_health(
                        InstanceId=instance["InstanceId"], HealthStatus="Unhealthy"
                    )
            stop.wait(0.05)

    breaker = threading.Thread(target=fail_new_instances, daemon=True)
    breaker.start()
    try:
        async with aws_scaler(client, moto, f"aws-asg/{group}") as handle:
            done = await scale(handle, 4)
    finally:
        stop.set()
        with contextlib.suppress(RuntimeError):
            await asyncio.to_thread(breaker.join, 5)
    assert done.status == OperationStatus.COMPENSATED, done.detail
    # Caught while waiting for health or by the verification after it, depending on the breaker's timing.
    assert "2 of 4 healthy" in done.detail and done.previous == 2 and done.reached == 2
    # Back to exactly 2. Which two remain is moto's choice; moto, unlike AWS, never replaces unhealthy ones.
    desired, running, _ = described_group(aws, group)
    assert (desired, running) == (2, 2)


def _instances(aws: SimpleNamespace, group: str) -> list[dict]:
    groups = aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return groups[0]["Instances"]
