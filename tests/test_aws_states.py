"""The AWS provider reads AWS's states as capacity (issue 28, item 5, and the AWS parts of items 6 and 7).

Against moto's server mode over real HTTP (tests/test_aws_scaling.py describes what moto does). Shapes moto
never produces (weighted instances, an ECS rollout with two deployments, AWS's transient errors) are
answered by the fault proxy in front of moto, in AWS's own wire format.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.infra.aws_scaling import GROUP_TAG, REQUEST_TAG, AwsScalingActivities
from autarky.scaling.policy_types import ResourceRef
from autarky.scaling.types import CapacityReading, OperationStatus, SetCapacityInput
from tests import test_aws_scaling
from tests.moto_server import FaultProxy, json_error, query_error
from tests.test_aws_scaling import (
    JSON,
    counts,
    make_group,
    make_service,
    read,
    scale,
    settings,
    unique,
)
from tests.test_aws_scaling import tagged as tagged_instances
from tests.test_scaler import scale as scale_through_saga
from tests.test_scaler_aws import aws_scaler

# The shared moto server, its boto3 clients (elbv2 too) and the fault proxy.
moto, aws, proxy = test_aws_scaling.moto, test_aws_scaling.aws, test_aws_scaling.proxy


def settles(reading: CapacityReading, target: int) -> bool:
    """ScalerWorkflow's rule for "the new capacity is healthy" (workflows/scaling.py, _wait_healthy)."""
    return reading.desired == target and reading.running == target and reading.healthy >= target


# ------------------------------------------------------------------------------------ Auto Scaling groups


def group_with_a_standby_instance(aws: SimpleNamespace) -> str:
    """A group of 2 with one instance in Standby, kept without lowering the desired capacity: the group
    launches a replacement."""
    group = make_group(aws, desired=2)
    standby = aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
        "AutoScalingGroups"
    ][0]["Instances"][0]["InstanceId"]
    aws.autoscaling.enter_standby(
        AutoScalingGroupName=group, InstanceIds=[standby], ShouldDecrementDesiredCapacity=False
    )
    return group


async def test_a_standby_instance_neither_serves_nor_fails_a_scale_up(
    moto: str, aws: SimpleNamespace
) -> None:
    group = group_with_a_standby_instance(aws)
    activities = AwsScalingActivities(settings(moto))

    reading = await scale(activities, f"aws-asg/{group}", 3)

    assert counts(reading) == (3, 3, 3)  # the old rule read 4 running (Standby included) and never settled
    assert settles(reading, 3)
    assert "1 Standby" in reading.detail


async def test_a_scale_up_with_a_standby_instance_succeeds_through_the_saga(
    client: Client, moto: str, aws: SimpleNamespace
) -> None:
    group = group_with_a_standby_instance(aws)

    async with aws_scaler(client, moto, f"aws-asg/{group}") as handle:
        done = await scale_through_saga(handle, 3)

    # Before: rolled back to 2 ("3 of 3 healthy, 4 running").
    assert done.status == OperationStatus.SUCCEEDED and (done.previous, done.reached) == (2, 3), done.detail


async def test_an_instance_failing_its_target_group_does_not_serve(moto: str, aws: SimpleNamespace) -> None:
    vpc = aws.ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    target_group = aws.elbv2.create_target_group(
        Name=unique("tg"), Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    group = make_group(aws, desired=3)
    aws.autoscaling.attach_load_balancer_target_groups(
        AutoScalingGroupName=group, TargetGroupARNs=[target_group]
    )
    instances = aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
        "AutoScalingGroups"
    ][0]["Instances"]
    # Still InService and Healthy for Auto Scaling; its target reads "unused" (Target.InvalidState).
    aws.ec2.stop_instances(InstanceIds=[instances[0]["InstanceId"]])
    activities = AwsScalingActivities(settings(moto))

    reading = await read(activities, f"aws-asg/{group}")

    assert counts(reading) == (3, 3, 2)  # before: 3 healthy
    assert not settles(reading, 3)
    assert "1 not healthy in their target group" in reading.detail


def group_answer(desired: int, instances: list[tuple[str, str, int]]) -> bytes:
    """DescribeAutoScalingGroups as AWS answers it, for a weighted group (moto sets no WeightedCapacity)."""
    members = "".join(
        f"<member><InstanceId>i-{n:017x}</InstanceId><InstanceType>c5.large</InstanceType>"
        f"<AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>{state}</LifecycleState>"
        f"<HealthStatus>{health}</HealthStatus><WeightedCapacity>{weight}</WeightedCapacity>"
        "<ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>"
        for n, (state, health, weight) in enumerate(instances)
    )
    return (
        '<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
        "<DescribeAutoScalingGroupsResult><AutoScalingGroups><member>"
        f"<AutoScalingGroupName>weighted</AutoScalingGroupName><MinSize>0</MinSize><MaxSize>20</MaxSize>"
        f"<DesiredCapacity>{desired}</DesiredCapacity><Instances>{members}</Instances>"
        "</member></AutoScalingGroups></DescribeAutoScalingGroupsResult>"
        "<ResponseMetadata><RequestId>0a1b2c3d</RequestId></ResponseMetadata>"
        "</DescribeAutoScalingGroupsResponse>"
    ).encode()


@pytest.mark.parametrize(
    ("desired", "instances", "expected"),
    [
        # Two instances of weight 2 fulfil a desired capacity of 4 units; a third in Standby does not count.
        (4, [("InService", "Healthy", 2), ("InService", "Healthy", 2), ("Standby", "Healthy", 2)], (4, 4, 4)),
        # AWS may overshoot a weighted desired capacity (3 units asked, 4 launched): fulfilled, not failed.
        (3, [("InService", "Healthy", 2), ("InService", "Healthy", 2)], (3, 3, 4)),
        # One of two weight-2 instances still pending: 2 of 4 units serve, 4 count toward the capacity.
        (4, [("InService", "Healthy", 2), ("Pending:Wait", "Healthy", 2)], (4, 4, 2)),
    ],
    ids=["standby-excluded", "overshoot", "pending"],
)
async def test_a_weighted_group_counts_units(
    proxy: FaultProxy, desired: int, instances: list[tuple[str, str, int]], expected: tuple[int, int, int]
) -> None:
    proxy.fail("DescribeAutoScalingGroups", status=200, body=group_answer(desired, instances))
    activities = AwsScalingActivities(settings(proxy.url))

    reading = await read(activities, "aws-asg/weighted")

    assert counts(reading) == expected  # before: instances (3, 3, 2), (3, 2, 2) and (4, 2, 1)
    assert settles(reading, desired) is (expected[2] >= desired)
    assert "units in service" in reading.detail


# ------------------------------------------------------------------------------------------ ECS services


async def test_an_ecs_service_mid_rollout_is_not_stable(proxy: FaultProxy, aws: SimpleNamespace) -> None:
    name = make_service(aws, desired=1)
    cluster, service = name.split("/")
    aws.ecs.update_service(cluster=cluster, service=service, desiredCount=3)  # moto: 3 running at once
    described = aws.ecs.describe_services(cluster=cluster, services=[service])
    entry = described["services"][0]
    # A rollout: the new deployment has 2 tasks running, the old one still 1; runningCount == desiredCount.
    primary = {
        "id": "ecs-svc/2",
        "status": "PRIMARY",
        "desiredCount": 3,
        "runningCount": 2,
        "pendingCount": 1,
    }
    active = {"id": "ecs-svc/1", "status": "ACTIVE", "desiredCount": 0, "runningCount": 1, "pendingCount": 0}
    answer = {
        "services": [
            {
                "serviceName": service,
                "clusterArn": entry["clusterArn"],
                "status": "ACTIVE",
                "desiredCount": 3,
                "runningCount": 3,
                "pendingCount": 1,
                "deployments": [primary, active],
            }
        ],
        "failures": [],
    }
    proxy.fail("DescribeServices", status=200, body=json.dumps(answer).encode(), content_type=JSON)
    activities = AwsScalingActivities(settings(proxy.url))

    reading = await read(activities, f"aws-ecs/{name}")

    assert (reading.desired, reading.running) == (3, 3)
    assert reading.healthy == 2  # before: 3, and the saga called it settled mid-rollout
    assert not settles(reading, 3)
    assert "not stable yet" in reading.detail
    # Once the rollout is over (moto: one deployment, running == desired), the same service settles.
    settled = await read(activities, f"aws-ecs/{name}")
    assert settled.healthy == settled.running == settled.desired


# ------------------------------------------------------------------------------------ errors and retries


@pytest.mark.parametrize(
    ("resource", "action", "status", "body", "says"),
    [
        ("aws-asg/busy", "SetDesiredCapacity", 400,
         query_error("ScalingActivityInProgress", "Scaling activity abc is in progress"),
         "busy with another scaling activity"),
        ("aws-asg/busy", "SetDesiredCapacity", 500,
         query_error("ResourceContention", "You already have a pending update", sender=False),
         "Auto Scaling is busy with other requests"),
        # In botocore's list of throttling codes, not in the provider's old one.
        ("aws-ecs/prod/api", "UpdateService", 400, json_error("BandwidthLimitExceeded", "slow"), "retrying"),
    ],
    ids=["scaling-activity-in-progress", "resource-contention", "ecs-botocore-throttle"],
)  # fmt: skip
async def test_transient_aws_errors_are_retryable_and_say_why(
    proxy: FaultProxy, aws: SimpleNamespace, resource: str, action: str, status: int, body: bytes, says: str
) -> None:
    if resource.startswith("aws-asg"):
        resource = f"aws-asg/{make_group(aws, desired=1)}"
    else:
        resource = f"aws-ecs/{make_service(aws, desired=1)}"
    content_type = JSON if resource.startswith("aws-ecs") else "text/xml"
    proxy.fail(action, status=status, body=body, content_type=content_type)
    activities = AwsScalingActivities(settings(proxy.url))

    with pytest.raises(ApplicationError) as raised:
        await scale(activities, resource, 2)

    assert not raised.value.non_retryable  # before: ScalingActivityInProgress was final ("check the bounds")
    assert says in raised.value.message
    assert "check the resource's name" not in raised.value.message


async def test_a_permanent_error_stays_final_with_a_hint(proxy: FaultProxy, aws: SimpleNamespace) -> None:
    resource = f"aws-asg/{make_group(aws, desired=1)}"
    proxy.fail("SetDesiredCapacity", status=400, body=query_error("ValidationError", "bad group"))
    activities = AwsScalingActivities(settings(proxy.url))

    with pytest.raises(ApplicationError) as raised:
        await scale(activities, resource, 2)

    assert raised.value.non_retryable
    assert "check the resource's name, its bounds" in raised.value.message


# ------------------------------------------------------------------------------------ EC2: the undo


async def test_the_ec2_undo_terminates_exactly_what_its_apply_created(
    moto: str, aws: SimpleNamespace
) -> None:
    group = unique("batch")
    resource = f"aws-ec2/{group}"
    activities = AwsScalingActivities(settings(moto))
    await scale(activities, resource, 1, key="s0-1-apply")
    await scale(activities, resource, 3, key="s0-2-apply")  # the change to undo: 2 instances
    applied = {i["InstanceId"] for i in tagged_instances(aws, REQUEST_TAG, "s0-2-apply")}
    # Then a newer member appears (a repair, a person): strictly newer (moto's LaunchTime is per second).
    await asyncio.sleep(1.05 - time.time() % 1)
    await scale(activities, resource, 4, key="s0-repair-1")
    newest = {i["InstanceId"] for i in tagged_instances(aws, REQUEST_TAG, "s0-repair-1")}

    reading = await scale(activities, resource, 2, key="s0-2-compensate")

    left = {i["InstanceId"] for i in tagged_instances(aws, GROUP_TAG, group)}
    assert left.isdisjoint(applied)  # before: the newest went first, one of the apply's instances stayed
    assert newest <= left and len(left) == 2
    assert reading.desired == 2


# ------------------------------------------------------------------------------------------ heartbeats


async def test_aws_calls_heartbeat(moto: str, aws: SimpleNamespace) -> None:
    group = make_group(aws, desired=1)
    beats: list[tuple[object, ...]] = []
    environment = ActivityEnvironment()
    environment.on_heartbeat = lambda *details: beats.append(details)
    activities = AwsScalingActivities(settings(moto))
    request = SetCapacityInput(
        resource=ResourceRef.parse(f"aws-asg/{group}"), desired=2, idempotency_key=unique("key")
    )

    await environment.run(activities.set_capacity, request)

    assert beats  # before: none, so a lost worker went unnoticed until start_to_close (10 min)
