"""A workflow worker process running only the ScalerWorkflow, for tests that kill it mid-saga.

python -m tests.scaler_worker ADDRESS TASK_QUEUE
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from workflows.scaling import ScalerWorkflow


async def main(address: str, task_queue: str) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[ScalerWorkflow],
        # Killed, its sticky queue would hold the workflow's next task for the default 10 s.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
    )
    print("polling", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
