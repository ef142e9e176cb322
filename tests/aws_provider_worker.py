"""A provider worker process running the real AWS scaling activities, for tests that kill it mid-call.

python -m tests.aws_provider_worker ADDRESS TASK_QUEUE ENDPOINT [STALL_AFTER]

ENDPOINT is the AWS endpoint (a moto server, or a proxy in front of one). STALL_AFTER names an EC2 operation
(e.g. RunInstances): once AWS has answered that call, the worker stalls there for good, inside the activity
and before it returns, so that a test can kill it in exactly that window (the activity keeps heartbeating
meanwhile, as a worker busy with a slow call would).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.infra.aws_scaling import AwsScalingActivities
from tests.test_aws_scaling import settings

STALL_SECONDS = 3600.0  # far beyond any test: the process is killed long before


def stall(event_name: str, **_: Any) -> None:
    print(f"stalled after {event_name}", flush=True)
    time.sleep(STALL_SECONDS)  # in the activity's thread: the event loop still heartbeats


async def main(address: str, task_queue: str, endpoint: str, stall_after: str | None = None) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    provider = AwsScalingActivities(settings(endpoint))
    if stall_after:
        # botocore's own event, after the call's response is parsed and before the client returns it.
        provider._client("ec2").meta.events.register(f"after-call.ec2.{stall_after}", stall)
    worker = Worker(
        client,
        task_queue=task_queue,
        activities=[provider.read_capacity, provider.set_capacity],
    )
    print("polling", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
