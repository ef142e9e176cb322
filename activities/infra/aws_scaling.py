"""AWS as a scaling provider: read and set the capacity of `aws-asg/…`, `aws-ecs/…` and `aws-ec2/…` resources.

The scaler workflow owns the policy, the cooldown and the saga; these activities only read a resource and
set its desired capacity, as one short AWS call or a few. They never retry on their own (botocore is held to
one attempt): a failure is classified instead, so that Temporal retries what may pass with its backoff
(throttling, 5xx, timeouts; a Retry-After becomes the next retry's delay) and stops at once on what a person
must fix (permissions, a wrong name, bounds, settings), with a message saying what to check. Every call
heartbeats (HEARTBEAT_INTERVAL) so that a lost worker shows within the caller's heartbeat_timeout.

Setting a capacity is safe to retry. An Auto Scaling group or an ECS service takes a desired count, which is
idempotent by nature. Plain EC2 instances (`aws-ec2/<group>`) are created by Autarky itself: each carries the
tags `autarky:group=<group>` and `autarky:request=<idempotency key>`, and a retry counts the instances its
request already created before it creates any (EC2 also gets the key as `ClientToken`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.model import OperationModel, OperationNotFoundError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.infra.aws_states import (
    TRANSIENT_HINTS,
    asg_count,
    ecs_stable,
    is_retryable,
    target_groups,
)
from autarky.core.retry_after import retry_after_delay
from autarky.scaling.policy_types import ResourceKind, ResourceRef
from autarky.scaling.settings import AwsSettings
from autarky.scaling.types import CapacityReading, ReadCapacityInput, SetCapacityInput

log = structlog.get_logger(__name__)

GROUP_TAG = "autarky:group"
REQUEST_TAG = "autarky:request"
LIVE_STATES = ("pending", "running")
APPLY_SUFFIX, COMPENSATE_SUFFIX = "-apply", "-compensate"
# Long calls beat this often, so that a lost worker shows within the activity's heartbeat_timeout (30 s).
HEARTBEAT_INTERVAL = timedelta(seconds=5)
# What a retry counts as already created by its request. `shutting-down` is on its way to `terminated`:
# such an instance no longer serves, so the request replaces it rather than count it.
CREATED_STATES = ("pending", "running", "stopping", "stopped")

# ApplicationError types of Autarky's own refusals (AWS's errors keep AWS's code as their type).
UNKNOWN_RESOURCE = "UnknownResource"
OUT_OF_BOUNDS = "CapacityOutOfBounds"
NOT_CONFIGURED = "AwsNotConfigured"
CONNECTION_FAILED = "AwsConnectionFailed"

ACCESS_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"}
)
CREDENTIAL_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
MISSING_CODES = frozenset(
    {"ServiceNotFoundException", "ClusterNotFoundException", "ServiceNotActiveException"}
)
PERMISSIONS = {
    ResourceKind.AWS_ASG: "autoscaling:DescribeAutoScalingGroups, autoscaling:SetDesiredCapacity, "
    "elasticloadbalancing:DescribeTargetHealth",
    ResourceKind.AWS_ECS: "ecs:DescribeServices, ecs:UpdateService",
    ResourceKind.AWS_EC2: "ec2:DescribeInstances, ec2:RunInstances, ec2:CreateTags, ec2:TerminateInstances",
}
SETTINGS = "AUTARKY_SCALING__AWS__"

P = ParamSpec("P")
T = TypeVar("T")


class AwsScalingActivities:
    """The `read_capacity_aws` and `set_capacity_aws` activities, on boto3 clients made from `settings`.

    `after_create` is a test hook: called with the request right after a successful `run_instances`, it lets
    a test fail the activity between creating instances and returning, as a crashed worker would.
    """

    def __init__(
        self, settings: AwsSettings, *, after_create: Callable[[SetCapacityInput], None] | None = None
    ) -> None:
        self.settings = settings
        self.after_create = after_create
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @activity.defn(name="read_capacity_aws")
    async def read_capacity(self, request: ReadCapacityInput) -> CapacityReading:
        """The resource's desired capacity and its running and healthy members."""
        return await self._in_thread(request.resource, self._read, request.resource)

    @activity.defn(name="set_capacity_aws")
    async def set_capacity(self, request: SetCapacityInput) -> CapacityReading:
        """Set the desired capacity; the reading right after the change (members may still be starting)."""
        return await self._in_thread(request.resource, self._set, request)

    # ------------------------------------------------------------------------------------------ dispatch

    def _read(self, resource: ResourceRef) -> CapacityReading:
        match resource.kind:
            case ResourceKind.AWS_ASG:
                return self._asg_reading(resource, self._asg(resource))
            case ResourceKind.AWS_ECS:
                return self._ecs_reading(resource)
            case ResourceKind.AWS_EC2:
                return self._ec2_reading(resource)
        raise _not_aws(resource)

    def _set(self, request: SetCapacityInput) -> CapacityReading:
        match request.resource.kind:
            case ResourceKind.AWS_ASG:
                return self._set_asg(request)
            case ResourceKind.AWS_ECS:
                return self._set_ecs(request)
            case ResourceKind.AWS_EC2:
                return self._set_ec2(request)
        raise _not_aws(request.resource)

    # ------------------------------------------------------------------------------- Auto Scaling groups

    def _asg(self, resource: ResourceRef) -> dict[str, Any]:
        groups = self._client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[resource.name]
        )["AutoScalingGroups"]
        if not groups:
            raise self._unknown(resource, f"no Auto Scaling group named {resource.name!r}")
        return groups[0]

    def _asg_reading(self, resource: ResourceRef, group: dict[str, Any]) -> CapacityReading:
        count = asg_count(group, self._target_health(group))
        return CapacityReading(
            resource=resource,
            desired=count.desired,
            running=count.running,
            healthy=count.serving,
            detail=count.detail,
        )

    def _target_health(self, group: dict[str, Any]) -> dict[str, list[str]] | None:
        """Each instance's target states in the group's target groups; None when none is attached."""
        arns = target_groups(group)
        if not arns:
            return None
        states: dict[str, list[str]] = {}
        for arn in arns:
            answer = self._client("elbv2").describe_target_health(TargetGroupArn=arn)
            for target in answer["TargetHealthDescriptions"]:
                states.setdefault(target["Target"]["Id"], []).append(target["TargetHealth"]["State"])
        return states

    def _set_asg(self, request: SetCapacityInput) -> CapacityReading:
        resource = request.resource
        group = self._asg(resource)
        low, high = group["MinSize"], group["MaxSize"]
        if not low <= request.desired <= high:
            raise ApplicationError(
                f"{resource.id}: desired capacity {request.desired} is outside the group's bounds "
                f"MinSize={low}..MaxSize={high}; change the group's bounds in AWS or the scaler's "
                "min_capacity/max_capacity for this resource",
                type=OUT_OF_BOUNDS,
                non_retryable=True,
            )
        previous = group["DesiredCapacity"]
        if previous != request.desired:
            # Our cooldown lives in the workflow; the group's own would silently refuse the change.
            self._client("autoscaling").set_desired_capacity(
                AutoScalingGroupName=resource.name, DesiredCapacity=request.desired, HonorCooldown=False
            )
            log.info(
                "aws capacity set",
                resource=resource.id,
                previous=previous,
                desired=request.desired,
                key=request.idempotency_key,
            )
        return self._asg_reading(resource, self._asg(resource))

    # ------------------------------------------------------------------------------------- ECS services

    def _ecs_service(self, resource: ResourceRef) -> dict[str, Any]:
        cluster, service = resource.name.split("/")
        answer = self._client("ecs").describe_services(cluster=cluster, services=[service])
        found = [s for s in answer.get("services", []) if s.get("status") != "INACTIVE"]
        if not found:
            reasons = ", ".join(f["reason"] for f in answer.get("failures", [])) or "INACTIVE (deleted)"
            raise self._unknown(resource, f"no ECS service {service!r} in cluster {cluster!r} ({reasons})")
        return found[0]

    def _ecs_reading(self, resource: ResourceRef) -> CapacityReading:
        service = self._ecs_service(resource)
        running, pending = service.get("runningCount", 0), service.get("pendingCount", 0)
        desired, deployments = service["desiredCount"], len(service.get("deployments", []))
        stable = ecs_stable(service)
        # Stable by botocore's services_stable waiter: one deployment and running == desired. During a
        # rollout the old deployment's tasks still count in runningCount, so a service that is not stable
        # reads fewer healthy tasks than desired (the primary deployment's, at most desired - 1) and the
        # saga keeps waiting instead of calling it settled.
        if stable:
            healthy = running
        else:
            primary = [d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"]
            healthy = min(primary[0].get("runningCount", 0) if primary else running, max(desired - 1, 0))
        return CapacityReading(
            resource=resource,
            desired=desired,
            running=running,
            healthy=healthy,
            detail=f"{running} tasks running, {pending} pending, {deployments} deployments "
            f"({'stable' if stable else 'not stable yet'}; service {service.get('status', '?')})",
        )

    def _set_ecs(self, request: SetCapacityInput) -> CapacityReading:
        resource = request.resource
        cluster, service = resource.name.split("/")
        previous = self._ecs_service(resource)["desiredCount"]
        if previous != request.desired:
            self._client("ecs").update_service(cluster=cluster, service=service, desiredCount=request.desired)
            log.info(
                "aws capacity set",
                resource=resource.id,
                previous=previous,
                desired=request.desired,
                key=request.idempotency_key,
            )
        return self._ecs_reading(resource)

    # ------------------------------------------------------------------------ EC2 instances of our own

    def _instances(self, filters: dict[str, Iterable[str]]) -> list[dict[str, Any]]:
        pages = (
            self._client("ec2")
            .get_paginator("describe_instances")
            .paginate(Filters=[{"Name": name, "Values": list(values)} for name, values in filters.items()])
        )
        return [i for page in pages for reservation in page["Reservations"] for i in reservation["Instances"]]

    def _members(self, group: str) -> list[dict[str, Any]]:
        return self._instances({f"tag:{GROUP_TAG}": [group], "instance-state-name": LIVE_STATES})

    def _ec2_reading(self, resource: ResourceRef) -> CapacityReading:
        members = self._members(resource.name)
        running = sum(1 for i in members if i["State"]["Name"] == "running")
        return CapacityReading(
            resource=resource,
            desired=len(members),
            running=len(members),
            healthy=running,
            detail=f"{len(members)} instances tagged {GROUP_TAG}={resource.name}, {running} running",
        )

    def _set_ec2(self, request: SetCapacityInput) -> CapacityReading:
        resource, group = request.resource, request.resource.name
        members = self._members(group)
        if request.desired > len(members):
            # A retry of this request: what it already created counts, even if not (yet) listed as live.
            created = self._instances(
                {
                    f"tag:{GROUP_TAG}": [group],
                    f"tag:{REQUEST_TAG}": [request.idempotency_key],
                    "instance-state-name": CREATED_STATES,
                }
            )
            known = {i["InstanceId"] for i in [*members, *created]}
            missing = request.desired - len(known)
            if missing > 0:
                self._run_instances(request, missing)
        elif request.desired < len(members):
            excess = len(members) - request.desired
            apply_key = _applied_by(request.idempotency_key)
            if apply_key is not None:
                # An undo removes exactly what its apply created, found by the tag set at launch; never
                # members someone or something else started meanwhile.
                doomed = [i["InstanceId"] for i in members if _tag(i, REQUEST_TAG) == apply_key][:excess]
                if len(doomed) < excess:
                    log.warning(
                        "aws undo leaves members it did not create",
                        resource=resource.id,
                        created_by_apply=len(doomed),
                        excess=excess,
                        key=request.idempotency_key,
                    )
            else:
                newest_first = sorted(members, key=lambda i: (i["LaunchTime"], i["InstanceId"]), reverse=True)
                doomed = [i["InstanceId"] for i in newest_first[:excess]]
            if not doomed:
                return self._ec2_reading(resource)
            # Terminating an instance that is already shutting down or terminated is accepted by EC2.
            self._client("ec2").terminate_instances(InstanceIds=doomed)
            log.info(
                "aws instances terminated",
                resource=resource.id,
                instances=doomed,
                desired=request.desired,
                key=request.idempotency_key,
            )
        return self._ec2_reading(resource)

    def _run_instances(self, request: SetCapacityInput, count: int) -> None:
        resource, settings = request.resource, self.settings
        if not settings.ec2_image_id:
            raise ApplicationError(
                f"{resource.id}: cannot launch instances without an image: set {SETTINGS}EC2_IMAGE_ID "
                f"(scaling.aws.ec2_image_id) to an AMI id in {settings.region}",
                type=NOT_CONFIGURED,
                non_retryable=True,
            )
        tags = [
            {"Key": GROUP_TAG, "Value": resource.name},
            {"Key": REQUEST_TAG, "Value": request.idempotency_key},
        ]
        arguments: dict[str, Any] = {
            "ImageId": settings.ec2_image_id,
            "InstanceType": settings.ec2_instance_type,
            "MinCount": count,
            "MaxCount": count,
            # Real EC2 answers a repeated token with the first call's instances (moto ignores it).
            "ClientToken": request.idempotency_key,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
        }
        if settings.ec2_subnet_id:
            arguments["SubnetId"] = settings.ec2_subnet_id
        created = self._client("ec2").run_instances(**arguments)["Instances"]
        log.info(
            "aws instances created",
            resource=resource.id,
            instances=[i["InstanceId"] for i in created],
            desired=request.desired,
            key=request.idempotency_key,
        )
        if self.after_create is not None:
            self.after_create(request)

    # ------------------------------------------------------------------------------- clients and errors

    def _client(self, service: str) -> Any:
        """One boto3 client per service and instance (clients are thread-safe, sessions are not)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session().client(
                    service,
                    endpoint_url=self.settings.endpoint_url,
                    config=self._config(),
                )
            return self._clients[service]

    def _session(self) -> boto3.session.Session:
        settings = self.settings
        if (settings.access_key_id is None) != (settings.secret_access_key is None):
            raise ApplicationError(
                f"only one of {SETTINGS}ACCESS_KEY_ID and {SETTINGS}SECRET_ACCESS_KEY is set: set both, "
                f"or neither to use {SETTINGS}PROFILE or the environment's credentials",
                type=NOT_CONFIGURED,
                non_retryable=True,
            )
        return boto3.session.Session(
            region_name=settings.region,
            profile_name=settings.profile,
            aws_access_key_id=settings.access_key_id.get_secret_value() if settings.access_key_id else None,
            aws_secret_access_key=(
                settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
            ),
        )

    def _config(self) -> Config:
        seconds = self.settings.request_timeout.total_seconds()
        # One attempt: Temporal's retry policy retries, with its backoff, and sees every failure.
        return Config(connect_timeout=seconds, read_timeout=seconds, retries={"total_max_attempts": 1})

    def _operation(self, name: str) -> OperationModel | None:
        """The operation's model (botocore reads its modelled retryable errors from it)."""
        for client in list(self._clients.values()):
            with contextlib.suppress(OperationNotFoundError):
                return client.meta.service_model.operation_model(name)  # type: ignore[no-any-return]
        return None

    def _unknown(self, resource: ResourceRef, what: str) -> ApplicationError:
        return ApplicationError(
            f"unknown resource {resource.id}: {what} in {self.settings.region}; "
            f"check the name and the region ({SETTINGS}REGION)",
            type=UNKNOWN_RESOURCE,
            non_retryable=True,
        )

    async def _in_thread(
        self, resource: ResourceRef, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run blocking boto3 code off the event loop; AWS's failures become retryable or final errors."""
        try:
            return await self._beating(asyncio.to_thread(function, *args, **kwargs))
        except ClientError as error:
            raise self._classify(resource, error) from error
        except (NoCredentialsError, PartialCredentialsError, ProfileNotFound) as error:
            raise ApplicationError(
                f"{resource.id}: no usable AWS credentials ({error}); set {SETTINGS}ACCESS_KEY_ID and "
                f"{SETTINGS}SECRET_ACCESS_KEY, or {SETTINGS}PROFILE, or provide them the usual AWS ways "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance or task role)",
                type=NOT_CONFIGURED,
                non_retryable=True,
            ) from error
        except (BotoConnectionError, HTTPClientError) as error:  # connect/read timeouts, refused, reset
            raise ApplicationError(
                f"{resource.id}: could not reach AWS ({error}); retrying", type=CONNECTION_FAILED
            ) from error
        except ParamValidationError as error:
            raise ApplicationError(
                f"{resource.id}: the request to AWS is invalid: {error}",
                type="ParamValidation",
                non_retryable=True,
            ) from error

    async def _beating(self, work: Coroutine[Any, Any, T]) -> T:
        """Await `work`, heartbeating at once and then every HEARTBEAT_INTERVAL until it ends."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                activity.heartbeat()
                done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_INTERVAL.total_seconds())
                if done:
                    return task.result()
        finally:
            task.cancel()  # a cancelled activity stops waiting (the thread's one AWS call still ends)

    def _classify(self, resource: ResourceRef, error: ClientError) -> ApplicationError:
        details = error.response.get("Error", {})
        metadata = error.response.get("ResponseMetadata", {})
        code = str(details.get("Code") or "Unknown")
        status = int(metadata.get("HTTPStatusCode") or 0)
        said = f"AWS {error.operation_name} answered {code} (HTTP {status}): {details.get('Message') or '-'}"
        if status >= 500 or is_retryable(error, self._operation(error.operation_name)):
            delay = _retry_after(metadata.get("HTTPHeaders", {}))
            log.warning("aws call failed, to be retried", resource=resource.id, code=code, status=status)
            why = TRANSIENT_HINTS.get(code, "retrying")
            return ApplicationError(f"{resource.id}: {said}; {why}", type=code, next_retry_delay=delay)
        if code in MISSING_CODES:
            message = (
                f"unknown resource {resource.id}: {said}; check the cluster and service names and the region"
            )
        else:
            message = f"{resource.id}: {said}; {self._hint(resource, code)}"
        return ApplicationError(message, type=code, non_retryable=True)

    def _hint(self, resource: ResourceRef, code: str) -> str:
        region = f"{SETTINGS}REGION={self.settings.region}"
        if code in ACCESS_CODES:
            needed = PERMISSIONS.get(resource.kind, "")
            return f"check the IAM permissions of Autarky's credentials (it needs {needed}) in {region}"
        if code in CREDENTIAL_CODES:
            return f"check the credentials ({SETTINGS}ACCESS_KEY_ID/SECRET_ACCESS_KEY or {SETTINGS}PROFILE)"
        if code.startswith("InvalidAMIID"):
            return (
                f"check {SETTINGS}EC2_IMAGE_ID ({self.settings.ec2_image_id}): the AMI must exist in {region}"
            )
        if code.startswith("InvalidSubnet"):
            return f"check {SETTINGS}EC2_SUBNET_ID ({self.settings.ec2_subnet_id}) in {region}"
        return f"check the resource's name, its bounds and the AWS settings ({region})"


def _applied_by(key: str) -> str | None:
    """The apply key an undo's key belongs to. ScalerWorkflow derives both from the operation:
    `<scaler>-<n>-apply` and `<scaler>-<n>-compensate` (workflows/scaling.py, `_key`)."""
    if key.endswith(COMPENSATE_SUFFIX):
        return key.removesuffix(COMPENSATE_SUFFIX) + APPLY_SUFFIX
    return None


def _tag(instance: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def _not_aws(resource: ResourceRef) -> ApplicationError:
    return ApplicationError(
        f"{resource.id} is not an AWS resource: it reached the AWS provider by mistake",
        type=UNKNOWN_RESOURCE,
        non_retryable=True,
    )


def _retry_after(headers: dict[str, str]) -> timedelta | None:
    """Retry-After as seconds or an HTTP date (botocore lower-cases header names); None when absent."""
    return retry_after_delay(headers.get("retry-after"))
