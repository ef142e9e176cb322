"""Which workflows and activities each kind of worker registers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.infra.probes import probe_host, probe_network
from activities.infra.remediation import RemediationActivities
from activities.infra.worker_pool import LocalWorkerPool, WorkerPoolActivities
from autarky.config import AutarkySettings
from workflows.autopilot import AutopilotWorkflow
from workflows.housekeeping import HousekeepingWorkflow

WORKFLOWS: list[type] = [AutopilotWorkflow, HousekeepingWorkflow]


def main_activities(settings: AutarkySettings) -> list[Callable[..., Any]]:
    remediation = RemediationActivities(settings.data_dir)
    return [probe_host, probe_network, remediation.notify, remediation.clear_cache, remediation.prune_cache]


def control_activities(pool: LocalWorkerPool) -> list[Callable[..., Any]]:
    return [WorkerPoolActivities(pool).restart_worker_pool]
