"""A control-queue worker process for tests: the real pool activity, over stand-in pool members.

    python -m tests.pool_worker ADDRESS CONTROL_QUEUE HOST_ID DATA_DIR STARTS_FILE

Members are tiny sleeping processes (with the pool's command-line flag, so the pool recognises them)
that append their pid to STARTS_FILE when they start: the test counts restarts from it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.infra.worker_pool import MEMBER_FLAG, LocalWorkerPool, WorkerPoolActivities
from autarky.core.hosts import host_queue, worker_identity

MEMBERS = 2
WARMUP = timedelta(seconds=2)
MEMBER_SCRIPT = (
    "import os, sys, time\nwith open(sys.argv[1], 'a') as f: f.write(f'{os.getpid()}\\n')\ntime.sleep(600)\n"
)


async def main(address: str, control_queue: str, host_id: str, data_dir: str, starts: str) -> None:
    pool = LocalWorkerPool(Path(data_dir), command=[sys.executable, "-c", MEMBER_SCRIPT, starts, MEMBER_FLAG])
    pool.ensure(MEMBERS)  # finds the members a killed predecessor left running
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    worker = Worker(
        client,
        task_queue=host_queue(control_queue, host_id),
        activities=[WorkerPoolActivities(pool, warmup=WARMUP).restart_worker_pool],
        identity=worker_identity(os.getpid(), host_id),
    )
    print("polling", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
