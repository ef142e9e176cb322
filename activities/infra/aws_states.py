"""How AWS's answers read as capacity: ASG lifecycle and target health, ECS stability, retryable errors.

Kept apart from the calls (aws_scaling.py) so each rule sits next to the AWS document or botocore data it
follows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import jmespath
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.model import OperationModel
from botocore.retries.standard import (
    ModeledRetryableChecker,
    OrRetryChecker,
    RetryContext,
    ThrottledRetryableChecker,
    ThrottlingStatusCodeChecker,
    TransientRetryableChecker,
)

# ASG lifecycle states that count toward the desired capacity while not serving yet
# (docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-lifecycle.html). Standby, EnteringStandby,
# Terminating:*, Detaching/Detached and Warmed:* do not count: they neither serve nor mean that a change
# failed, so they appear only in the reading's detail.
STARTING_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed"})

# Transient errors AWS models for SetDesiredCapacity/UpdateService that botocore's lists lack: the group is
# busy (its own policy, an instance refresh, a scheduled action) or the account's Auto Scaling is contended.
TRANSIENT_HINTS = {
    "ScalingActivityInProgress": "the group is busy with another scaling activity (its own policy, an "
    "instance refresh or a scheduled action); retrying once it has finished",
    "ResourceContention": "Auto Scaling is busy with other requests of this account; retrying",
    # RunInstances again under the same ClientToken with another count: the instances of an earlier attempt
    # are not all visible yet (EC2 reads are eventually consistent); a later attempt sees them.
    "IdempotentParameterMismatch": "an earlier attempt's instances are not visible yet; retrying",
}
# Server-side codes some services send with a 4xx-looking shape; botocore retries them by their 5xx status.
SERVER_CODES = frozenset(
    {"ServiceUnavailable", "Unavailable", "InternalError", "InternalFailure", "ServerException"}
)

# botocore's "standard" retry mode, less its attempt counter: transient codes and 5xx, throttling codes and
# 429, and errors the service model marks retryable (botocore/retries/standard.py).
_BOTOCORE_RETRYABLE = OrRetryChecker(
    [
        TransientRetryableChecker(),
        ThrottledRetryableChecker(),
        ThrottlingStatusCodeChecker(),
        ModeledRetryableChecker(),
    ]
)


def is_retryable(error: ClientError, operation: OperationModel | None) -> bool:
    """botocore's own verdict on `error`, plus the modelled transient codes above."""
    code = str(error.response.get("Error", {}).get("Code") or "")
    if code in TRANSIENT_HINTS or code in SERVER_CODES:
        return True
    metadata = error.response.get("ResponseMetadata", {})
    status = int(metadata.get("HTTPStatusCode") or 0)
    http = AWSResponse(url="", status_code=status, headers=metadata.get("HTTPHeaders", {}), raw=None)
    context = RetryContext(
        attempt_number=1, operation_model=operation, parsed_response=error.response, http_response=http
    )
    return bool(_BOTOCORE_RETRYABLE.is_retryable(context))


# ------------------------------------------------------------------------------------- Auto Scaling


@dataclass(frozen=True)
class AsgCount:
    desired: int
    running: int  # capacity units counting toward the desired capacity (in service or starting)
    serving: int  # units in service, healthy, and healthy in every attached target group
    detail: str


def target_groups(group: Mapping[str, Any]) -> list[str]:
    """The group's elbv2 target groups, from the group itself (no extra call): TargetGroupARNs and the
    newer TrafficSources of type elbv2."""
    arns = list(group.get("TargetGroupARNs") or [])
    for source in group.get("TrafficSources") or []:
        if source.get("Type") == "elbv2" and source.get("Identifier") not in arns:
            arns.append(source["Identifier"])
    return arns


def asg_count(group: Mapping[str, Any], target_health: Mapping[str, Iterable[str]] | None) -> AsgCount:
    """Read a group as capacity units.

    `target_health` maps an instance id to its target states in the attached target groups (None: no target
    group attached). Only "healthy" in all of them serves: "initial", "unhealthy", "draining" (deregistration
    delay) and "unused" do not. Weighted groups count WeightedCapacity units. AWS fulfils a weighted desired
    capacity when the units reach it and may overshoot, so a group whose serving units meet the desired
    capacity reads running == desired: the extra units (overshoot, a Pending replacement, Standby) are no
    failure of the change.
    """
    desired = int(group["DesiredCapacity"])
    serving = starting = 0
    others: dict[str, int] = {}
    unhealthy_targets = 0
    for instance in group.get("Instances", []):
        units = int(instance.get("WeightedCapacity") or 1)
        state = str(instance.get("LifecycleState"))
        if state == "InService":
            states = None if target_health is None else list(target_health.get(instance["InstanceId"], []))
            target_ok = states is None or (bool(states) and all(s == "healthy" for s in states))
            if instance.get("HealthStatus") == "Healthy" and target_ok:
                serving += units
            else:
                # In service but not (yet) passing its checks: it counts toward desired, it does not serve.
                starting += units
                unhealthy_targets += 0 if target_ok else 1
        elif state in STARTING_STATES:
            starting += units
        else:
            others[state] = others.get(state, 0) + units
    running = desired if serving >= desired else serving + starting
    weighted = any(i.get("WeightedCapacity") for i in group.get("Instances", []))
    parts = [f"{serving} units in service and healthy" if weighted else f"{serving} in service and healthy"]
    if starting:
        parts.append(f"{starting} starting or failing checks")
    if unhealthy_targets:
        parts.append(f"{unhealthy_targets} not healthy in their target group")
    parts += [f"{n} {state}" for state, n in sorted(others.items())]
    detail = f"{', '.join(parts)} (group bounds {group['MinSize']}..{group['MaxSize']})"
    return AsgCount(desired=desired, running=running, serving=serving, detail=detail)


# ------------------------------------------------------------------------------------- ECS services


@functools.cache
def _services_stable() -> str:
    """The success rule of botocore's `services_stable` waiter (data/ecs/.../waiters-2.json): one
    deployment and runningCount == desiredCount, read from botocore's data rather than copied."""
    client = boto3.session.Session().client(
        "ecs", region_name="us-east-1", aws_access_key_id="-", aws_secret_access_key="-"
    )
    for acceptor in client.get_waiter("services_stable").config.acceptors:
        if acceptor.state == "success":
            return str(acceptor.argument)
    raise RuntimeError("botocore's ECS services_stable waiter has no success rule")


def ecs_stable(service: Mapping[str, Any]) -> bool:
    """Whether the service is stable by botocore's waiter rule (applied to this one service)."""
    return bool(jmespath.search(_services_stable(), {"services": [dict(service)]}))
