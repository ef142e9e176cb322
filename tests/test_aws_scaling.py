"""The AWS scaling provider (activities/infra/aws_scaling.py) against moto's server mode, over real HTTP.

Moto stands in for AWS; a small proxy in front of it (tests/moto_server.py) answers chosen calls with AWS's
own throttling and validation errors, which moto never sends. Two tests run the activity under a real
Temporal worker to show that Temporal, not the activity, retries what is retryable and stops on what is not.

What moto does that these tests rely on (moto 5):
- Auto Scaling: launches and removes instances at once on set_desired_capacity, all InService and Healthy;
  it does not check the desired capacity against MinSize/MaxSize (the provider checks before calling).
- ECS: a new service has runningCount 0 and pendingCount = desiredCount (unless MOTO_ECS_SERVICE_RUNNING is
  set); update_service(desiredCount=N) sets runningCount to N at once. Real ECS converges over time.
- EC2: run_instances ignores ClientToken; new instances read back as "running" at once; LaunchTime has a
  resolution of one second; terminating an instance twice is accepted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from pydantic import SecretStr
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.infra.aws_scaling import GROUP_TAG, REQUEST_TAG, AwsScalingActivities
from autarky.scaling.policy_types import ResourceRef
from autarky.scaling.settings import AwsSettings
from autarky.scaling.types import CapacityReading, ReadCapacityInput, SetCapacityInput
from tests.moto_server import FaultProxy, ec2_error, free_port, json_error, moto_server, query_error

IMAGE = "ami-12c6146b"  # one of moto's built-in AMIs
JSON = "application/x-amz-json-1.1"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto: str) -> SimpleNamespace:
    """Direct boto3 clients on moto, to arrange resources and to check what the activities did."""
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return SimpleNamespace(
        **{name: session.client(name, endpoint_url=moto) for name in ("autoscaling", "ecs", "ec2", "elbv2")}
    )


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto) as running:
        yield running


def settings(endpoint: str, **overrides: Any) -> AwsSettings:
    values: dict[str, Any] = {
        "endpoint_url": endpoint,
        "access_key_id": SecretStr("testing"),
        "secret_access_key": SecretStr("testing"),
        "ec2_image_id": IMAGE,
        # Moto (and the fault proxy before it) took over 5 s to answer on a busy machine. No test here waits
        # for this timeout (a closed port is refused at once).
        "request_timeout": timedelta(seconds=60),
    }
    return AwsSettings(**(values | overrides))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def read(activities: AwsScalingActivities, resource: str) -> CapacityReading:
    return await ActivityEnvironment().run(
        activities.read_capacity, ReadCapacityInput(resource=ResourceRef.parse(resource))
    )


async def scale(
    activities: AwsScalingActivities, resource: str, desired: int, key: str | None = None
) -> CapacityReading:
    request = SetCapacityInput(
        resource=ResourceRef.parse(resource), desired=desired, idempotency_key=key or unique("key")
    )
    return await ActivityEnvironment().run(activities.set_capacity, request)


def counts(reading: CapacityReading) -> tuple[int, int, int]:
    return reading.desired, reading.running, reading.healthy


def make_group(aws: SimpleNamespace, desired: int = 1, maximum: int = 10) -> str:
    name = unique("web")
    aws.ec2.create_launch_template(
        LaunchTemplateName=f"lt-{name}", LaunchTemplateData={"ImageId": IMAGE, "InstanceType": "t3.micro"}
    )
    aws.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": f"lt-{name}"},
        MinSize=0,
        MaxSize=maximum,
        DesiredCapacity=desired,
        AvailabilityZones=["us-east-1a"],
    )
    return name


def described_group(aws: SimpleNamespace, name: str) -> tuple[int, int, int]:
    group = aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    instances = group["Instances"]
    healthy = [i for i in instances if (i["LifecycleState"], i["HealthStatus"]) == ("InService", "Healthy")]
    return group["DesiredCapacity"], len(instances), len(healthy)


def tagged(
    aws: SimpleNamespace, key: str, value: str, states: tuple[str, ...] = ("pending", "running")
) -> list:
    pages = aws.ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": f"tag:{key}", "Values": [value]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def ids(instances: list[dict[str, Any]]) -> set[str]:
    return {i["InstanceId"] for i in instances}


# ------------------------------------------------------------------------------------ Auto Scaling groups


async def test_asg_reads_and_scales_up_and_down(moto: str, aws: SimpleNamespace) -> None:
    name = make_group(aws, desired=1)
    activities = AwsScalingActivities(settings(moto))

    reading = await read(activities, f"aws-asg/{name}")
    assert counts(reading) == (1, 1, 1)
    assert reading.settled
    assert "bounds 0..10" in reading.detail

    reading = await scale(activities, f"aws-asg/{name}", 3)
    assert counts(reading) == (3, 3, 3)
    assert described_group(aws, name) == (3, 3, 3)

    reading = await scale(activities, f"aws-asg/{name}", 1)
    assert counts(reading) == (1, 1, 1)
    assert described_group(aws, name) == (1, 1, 1)


async def test_asg_desired_above_max_is_final_and_names_the_bounds(moto: str, aws: SimpleNamespace) -> None:
    name = make_group(aws, desired=1, maximum=4)
    activities = AwsScalingActivities(settings(moto))

    with pytest.raises(ApplicationError) as raised:
        await scale(activities, f"aws-asg/{name}", 5)

    assert raised.value.non_retryable
    assert raised.value.type == "CapacityOutOfBounds"
    assert "MinSize=0..MaxSize=4" in raised.value.message
    assert described_group(aws, name) == (1, 1, 1)  # untouched (moto itself would have accepted 5)


async def test_asg_unknown_group_is_final_and_named(moto: str) -> None:
    activities = AwsScalingActivities(settings(moto))
    name = unique("missing")

    for attempt in (read(activities, f"aws-asg/{name}"), scale(activities, f"aws-asg/{name}", 2)):
        with pytest.raises(ApplicationError) as raised:
            await attempt
        assert raised.value.non_retryable
        assert raised.value.type == "UnknownResource"
        assert f"unknown resource aws-asg/{name}" in raised.value.message


# ------------------------------------------------------------------------------------------ ECS services


def make_service(aws: SimpleNamespace, desired: int = 1) -> str:
    cluster, service = unique("prod"), unique("api")
    aws.ecs.create_cluster(clusterName=cluster)
    aws.ecs.register_task_definition(
        family=service, containerDefinitions=[{"name": "app", "image": "nginx", "memory": 128}]
    )
    aws.ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=service, desiredCount=desired)
    return f"{cluster}/{service}"


async def test_ecs_scales_up_and_to_zero(moto: str, aws: SimpleNamespace) -> None:
    name = make_service(aws, desired=1)
    activities = AwsScalingActivities(settings(moto))

    # Moto starts a new service with no running task: runningCount 0, pendingCount 1.
    reading = await read(activities, f"aws-ecs/{name}")
    assert counts(reading) == (1, 0, 0)
    assert "1 pending" in reading.detail

    # update_service: moto sets runningCount to the new desiredCount at once (real ECS gets there later).
    reading = await scale(activities, f"aws-ecs/{name}", 3)
    assert counts(reading) == (3, 3, 3)
    cluster, service = name.split("/")
    described = aws.ecs.describe_services(cluster=cluster, services=[service])["services"][0]
    assert (described["desiredCount"], described["runningCount"]) == (3, 3)

    reading = await scale(activities, f"aws-ecs/{name}", 0)
    assert counts(reading) == (0, 0, 0)


async def test_ecs_unknown_service_or_cluster_is_final(moto: str, aws: SimpleNamespace) -> None:
    cluster = make_service(aws).split("/")[0]
    activities = AwsScalingActivities(settings(moto))

    with pytest.raises(ApplicationError) as raised:
        await read(activities, f"aws-ecs/{cluster}/nothing")
    assert raised.value.non_retryable
    assert f"unknown resource aws-ecs/{cluster}/nothing" in raised.value.message
    assert "MISSING" in raised.value.message

    with pytest.raises(ApplicationError) as raised:
        await scale(activities, "aws-ecs/no-such-cluster/api", 2)
    assert raised.value.non_retryable
    assert raised.value.type == "ClusterNotFoundException"
    assert "unknown resource aws-ecs/no-such-cluster/api" in raised.value.message


# ---------------------------------------------------------------------------------- EC2 instances of ours


async def test_ec2_scales_up_and_terminates_the_newest_first(moto: str, aws: SimpleNamespace) -> None:
    group = unique("batch")
    activities = AwsScalingActivities(settings(moto))

    assert counts(await read(activities, f"aws-ec2/{group}")) == (0, 0, 0)
    assert counts(await scale(activities, f"aws-ec2/{group}", 2)) == (2, 2, 2)
    first = tagged(aws, GROUP_TAG, group)
    assert len(first) == 2
    assert all(i["InstanceType"] == "t3.micro" and i["ImageId"] == IMAGE for i in first)

    # Moto's LaunchTime has a resolution of a second: the third instance must be strictly newer.
    await asyncio.sleep(1.05 - time.time() % 1)
    await scale(activities, f"aws-ec2/{group}", 3)
    third = ids(tagged(aws, GROUP_TAG, group)) - ids(first)
    assert len(third) == 1

    reading = await scale(activities, f"aws-ec2/{group}", 1)
    assert counts(reading) == (1, 1, 1)
    # The newest went first; among equally new ones the higher instance id: the lowest one survives.
    assert ids(tagged(aws, GROUP_TAG, group)) == {min(ids(first))}
    gone = ids(tagged(aws, GROUP_TAG, group, states=("shutting-down", "terminated")))
    assert gone == third | {max(ids(first))}


async def test_ec2_retry_after_a_crash_creates_nothing_more(moto: str, aws: SimpleNamespace) -> None:
    group = unique("batch")
    created: list[SetCapacityInput] = []

    def crash_once(request: SetCapacityInput) -> None:
        created.append(request)
        if len(created) == 1:
            raise RuntimeError("worker died right after run_instances")

    activities = AwsScalingActivities(settings(moto), after_create=crash_once)
    request = SetCapacityInput(
        resource=ResourceRef.parse(f"aws-ec2/{group}"), desired=2, idempotency_key=unique("k")
    )

    with pytest.raises(RuntimeError, match="worker died"):
        await ActivityEnvironment().run(activities.set_capacity, request)
    reading = await ActivityEnvironment().run(activities.set_capacity, request)  # Temporal's retry

    assert counts(reading) == (2, 2, 2)
    assert len(created) == 1  # no second run_instances
    assert len(tagged(aws, GROUP_TAG, group)) == 2
    assert len(tagged(aws, REQUEST_TAG, request.idempotency_key)) == 2


async def test_ec2_stopped_instances_of_the_request_count_as_created(moto: str, aws: SimpleNamespace) -> None:
    """Instances a request created count for its retry even when they no longer read as live (stopped, or
    not yet listed by an eventually consistent EC2): the retry looks them up by the request's tag."""
    group = unique("batch")
    created: list[SetCapacityInput] = []
    activities = AwsScalingActivities(settings(moto), after_create=created.append)
    key = unique("k")

    await scale(activities, f"aws-ec2/{group}", 2, key=key)
    aws.ec2.stop_instances(InstanceIds=list(ids(tagged(aws, GROUP_TAG, group))))
    reading = await scale(activities, f"aws-ec2/{group}", 2, key=key)

    assert len(created) == 1
    assert counts(reading) == (0, 0, 0)  # the stopped ones do not serve: the scaler will see that
    assert len(tagged(aws, REQUEST_TAG, key, states=("stopping", "stopped"))) == 2


async def test_ec2_without_an_image_is_final_and_says_what_to_set(moto: str) -> None:
    activities = AwsScalingActivities(settings(moto, ec2_image_id=None))

    with pytest.raises(ApplicationError) as raised:
        await scale(activities, f"aws-ec2/{unique('batch')}", 1)

    assert raised.value.non_retryable
    assert "AUTARKY_SCALING__AWS__EC2_IMAGE_ID" in raised.value.message


# ------------------------------------------------------------------------------------ failure handling


async def test_throttling_is_retryable_and_retry_after_sets_the_delay(
    proxy: FaultProxy, aws: SimpleNamespace
) -> None:
    name = make_group(aws, desired=1)
    proxy.fail(
        "SetDesiredCapacity",
        status=400,
        body=query_error("Throttling", "Rate exceeded"),
        headers={"Retry-After": "7"},
    )
    activities = AwsScalingActivities(settings(proxy.url))

    with pytest.raises(ApplicationError) as raised:
        await scale(activities, f"aws-asg/{name}", 2)
    assert not raised.value.non_retryable
    assert raised.value.type == "Throttling"
    assert raised.value.next_retry_delay == timedelta(seconds=7)
    assert "Rate exceeded" in raised.value.message
    assert described_group(aws, name)[0] == 1

    assert counts(await scale(activities, f"aws-asg/{name}", 2)) == (2, 2, 2)
    assert proxy.requests["SetDesiredCapacity"] == 2


@pytest.mark.parametrize(
    ("resource", "action", "status", "body", "retryable", "says"),
    [
        ("aws-asg/g", "DescribeAutoScalingGroups", 503,
         query_error("ServiceUnavailable", "busy", sender=False), True, "ServiceUnavailable"),
        ("aws-asg/g", "DescribeAutoScalingGroups", 400, query_error("ValidationError", "bad name"),
         False, "bounds"),
        ("aws-asg/g", "DescribeAutoScalingGroups", 403, query_error("AccessDenied", "not authorized"),
         False, "autoscaling:SetDesiredCapacity"),
        ("aws-ecs/c/s", "DescribeServices", 400, json_error("ThrottlingException", "Rate exceeded"),
         True, "ThrottlingException"),
        ("aws-ecs/c/s", "DescribeServices", 400, json_error("AccessDeniedException", "not authorized"),
         False, "ecs:UpdateService"),
        ("aws-ecs/c/s", "DescribeServices", 400, json_error("ClientException", "bad request"),
         False, "bad request"),
        ("aws-ecs/c/s", "DescribeServices", 500, json_error("ServerException", "oops"), True, "oops"),
        ("aws-ec2/b", "DescribeInstances", 503, ec2_error("RequestLimitExceeded", "Request limit exceeded."),
         True, "RequestLimitExceeded"),
        ("aws-ec2/b", "DescribeInstances", 403, ec2_error("UnauthorizedOperation", "not authorized"),
         False, "ec2:RunInstances"),
        ("aws-ec2/b", "RunInstances", 400, ec2_error("InvalidAMIID.NotFound", "no such image"),
         False, "AUTARKY_SCALING__AWS__EC2_IMAGE_ID"),
        ("aws-ec2/b", "RunInstances", 400, ec2_error("InvalidParameterCombination", "no"), False, "settings"),
        ("aws-ec2/b", "RunInstances", 500, ec2_error("InternalError", "oops"), True, "InternalError"),
    ],
    ids=["asg-503", "asg-validation", "asg-access", "ecs-throttling", "ecs-access", "ecs-client", "ecs-500",
         "ec2-request-limit", "ec2-unauthorized", "ec2-bad-ami", "ec2-invalid-parameters", "ec2-500"],
)  # fmt: skip
async def test_aws_errors_are_classified(
    proxy: FaultProxy, resource: str, action: str, status: int, body: bytes, retryable: bool, says: str
) -> None:
    content_type = JSON if resource.startswith("aws-ecs") else "text/xml"
    proxy.fail(action, status=status, body=body, content_type=content_type)
    activities = AwsScalingActivities(settings(proxy.url))
    resource = f"{resource}-{uuid.uuid4().hex[:6]}"  # EC2 groups start empty, so set 1 runs instances

    with pytest.raises(ApplicationError) as raised:
        if action == "RunInstances":
            await scale(activities, resource, 1)
        else:
            await read(activities, resource)

    assert raised.value.non_retryable is not retryable
    assert says in raised.value.message
    assert resource in raised.value.message
    assert raised.value.next_retry_delay is None
    assert proxy.requests[action] == 1  # botocore made one attempt: retrying is Temporal's job


async def test_an_unreachable_endpoint_is_retryable() -> None:
    activities = AwsScalingActivities(settings(f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(ApplicationError) as raised:
        await read(activities, "aws-asg/web")

    assert not raised.value.non_retryable
    assert raised.value.type == "AwsConnectionFailed"


async def test_missing_credentials_are_final_and_say_how_to_configure(
    moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for variable in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    activities = AwsScalingActivities(settings(moto, access_key_id=None, secret_access_key=None))

    with pytest.raises(ApplicationError) as raised:
        await read(activities, "aws-asg/web")

    assert raised.value.non_retryable
    assert "AUTARKY_SCALING__AWS__ACCESS_KEY_ID" in raised.value.message
    assert "AUTARKY_SCALING__AWS__PROFILE" in raised.value.message


# ------------------------------------------------------------------------ under a real Temporal worker


@workflow.defn(name="AwsSetCapacityTestWorkflow", sandboxed=False)
class SetCapacityWorkflow:
    @workflow.run
    async def run(self, request: SetCapacityInput) -> CapacityReading:
        return await workflow.execute_activity(
            "set_capacity_aws",
            request,
            result_type=CapacityReading,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3),
        )


async def run_under_worker(client: Client, proxy: FaultProxy, request: SetCapacityInput) -> Any:
    activities = AwsScalingActivities(settings(proxy.url))
    task_queue = unique("aws-scaling")
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SetCapacityWorkflow],
        activities=[activities.read_capacity, activities.set_capacity],
    ):
        handle = await client.start_workflow(
            SetCapacityWorkflow.run,
            request,
            id=unique("aws-set-capacity"),
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
        try:
            return handle, await handle.result()
        except WorkflowFailureError as failure:
            return handle, failure


async def test_temporal_retries_a_throttled_call_after_retry_after(
    client: Client, proxy: FaultProxy, aws: SimpleNamespace
) -> None:
    name = make_group(aws, desired=1)
    proxy.fail(
        "SetDesiredCapacity",
        status=400,
        body=query_error("Throttling", "Rate exceeded"),
        headers={"Retry-After": "1"},
    )
    request = SetCapacityInput(resource=ResourceRef.parse(f"aws-asg/{name}"), desired=3, idempotency_key="k1")

    started = time.monotonic()
    handle, reading = await run_under_worker(client, proxy, request)

    assert isinstance(reading, CapacityReading)
    assert counts(reading) == (3, 3, 3)
    assert proxy.requests["SetDesiredCapacity"] == 2
    assert time.monotonic() - started >= 1.0  # Retry-After's second, not the policy's 0.1 s
    history = await handle.fetch_history()
    [started_event] = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    attributes = started_event.activity_task_started_event_attributes
    assert attributes.attempt == 2
    failure = attributes.last_failure.application_failure_info  # what attempt 1 reported
    assert failure.type == "Throttling"
    assert failure.next_retry_delay.ToTimedelta() == timedelta(seconds=1)


async def test_temporal_does_not_retry_a_validation_error(
    client: Client, proxy: FaultProxy, aws: SimpleNamespace
) -> None:
    name = make_group(aws, desired=1)
    proxy.fail(
        "SetDesiredCapacity",
        status=400,
        body=query_error("ValidationError", "New SetDesiredCapacity value 3 is above max value 2"),
        times=3,
    )
    request = SetCapacityInput(resource=ResourceRef.parse(f"aws-asg/{name}"), desired=3, idempotency_key="k1")

    _, failure = await run_under_worker(client, proxy, request)

    assert isinstance(failure, WorkflowFailureError)
    assert isinstance(failure.cause, ActivityError)
    cause = failure.cause.cause
    assert isinstance(cause, ApplicationError)
    assert cause.non_retryable
    assert cause.type == "ValidationError"
    assert "above max value 2" in cause.message
    assert proxy.requests["SetDesiredCapacity"] == 1  # exactly one attempt
    assert described_group(aws, name)[0] == 1
