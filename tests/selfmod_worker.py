"""A worker process running SelfModificationWorkflow and its real activities, for tests that kill it.

python -m tests.selfmod_worker ADDRESS TASK_QUEUE DATA_DIR
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from workers.registry import selfmod_activities
from workflows.self_modify import SelfModificationWorkflow


async def main(address: str, task_queue: str, data_dir: str) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    settings = AutarkySettings(data_dir=Path(data_dir), llm=LlmSettings(provider="offline"))
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[SelfModificationWorkflow],
        activities=selfmod_activities(settings, {}),
        # Killed, its sticky queue would hold the workflow's next task for the default 10 s.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
    )
    print("polling", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
