"""What each worker registers: the AWS provider only where AWS resources are configured."""

from __future__ import annotations

import subprocess
import sys

from temporalio import activity

from autarky.core.settings import AutarkySettings
from autarky.scaling.settings import ScalableResource, ScalingSettings
from workers.registry import main_activities


def names(settings: AutarkySettings) -> set[str | None]:
    return {getattr(activity._Definition.from_callable(a), "name", None) for a in main_activities(settings)}


def test_aws_activities_are_registered_only_with_aws_resources() -> None:
    aws = AutarkySettings(scaling=ScalingSettings(resources=[ScalableResource(resource="aws-asg/web")]))
    assert {"read_capacity_aws", "set_capacity_aws"} <= names(aws)
    assert not {"read_capacity_aws", "set_capacity_aws"} & names(AutarkySettings())
    assert {"request_scaling", "probe_task_queue", "discover_hosts"} <= names(AutarkySettings())


def test_a_default_worker_does_not_import_boto3() -> None:
    # boto3 costs a worker ~12 MiB of its 90 MiB budget; the embedded default has no AWS resources.
    code = "\n".join(
        [
            "import sys",
            "from autarky.core.settings import AutarkySettings",
            "from workers.registry import main_activities",
            "main_activities(AutarkySettings())",
            "print('boto3' in sys.modules)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_worker_loads_the_research_libraries_only_when_a_cycle_needs_them() -> None:
    # arxiv, PyGithub, SQLAlchemy, the LLM SDKs and bm25s cost a worker well over 100 MiB together.
    heavy = ["sqlalchemy", "alembic", "arxiv", "github", "openai", "anthropic", "bm25s", "numpy"]
    code = "\n".join(
        [
            "import sys",
            "from autarky.core.settings import AutarkySettings",
            "from workers.registry import research_activities",
            "research_activities(AutarkySettings())",
            f"print([m for m in {heavy!r} if m in sys.modules])",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
