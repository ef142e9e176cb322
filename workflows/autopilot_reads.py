"""What AutopilotWorkflow's Monitor stage reads: which hosts run a worker, each host's probes, and the
periodic reads of other capabilities on the research queue (full workers).

Helpers of the workflow (none is defined here: one workflow file per process). The capability reads —
model variants never A/B tested, the anomaly detector's active version (self-modification), agents
short of their goals — update the autopilot's state they are given; one that fails leaves the loop
running and tries again at its next interval. They take the settings as a function, read where they are
used: `reconfigure` may replace the workflow's settings while a read waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityConfig

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.settings import AutopilotSettings
    from autarky.autopilot.types import (
        AutopilotState,
        HostProbeInput,
        HostSample,
        NetworkProbeInput,
        NetworkSample,
        probe_host,
        probe_network,
    )
    from autarky.core import hosts
    from autarky.core.findings import Finding
    from autarky.core.hosts import DiscoveredHosts, DiscoverHostsInput, host_queue
    from autarky.models.types import new_variant_finding, untested_model_variants
    from autarky.selfmod.agents import ANOMALY_DETECTOR
    from autarky.selfmod.types import (
        ActiveAgentInput,
        ShortfallInput,
        active_agent_parameters,
        agent_shortfalls,
        shortfall_finding_message,
    )

READ_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
# A probe or remedy for a host whose worker does not pick it up this soon finds the host gone.
HOST_PICKUP_TIMEOUT = timedelta(seconds=10)
MAX_VARIANT_FINDINGS = 5
# The Monitor stage waits for these reads: no research worker must not hold it up for long.
REGISTRY_PICKUP_TIMEOUT = timedelta(seconds=10)


async def discover_hosts() -> DiscoveredHosts:
    return await workflow.execute_activity(
        hosts.discover_hosts,
        DiscoverHostsInput(task_queue=workflow.info().task_queue),
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=READ_RETRY,
        summary="which hosts run a worker (pollers of the shared task queue)",
    )


async def probe(
    host: str, settings: AutopilotSettings, pool_queue: str | None
) -> tuple[HostSample | BaseException, NetworkSample | BaseException]:
    """Both probes of `host` on its host queue; a failed one is returned as its exception, so it does not
    throw the other's sample away. `pool_queue`: the host's pool queue, whose backlog the probe reads."""
    targets = settings.network_targets or []
    options = ActivityConfig(
        task_queue=host_queue(workflow.info().task_queue, host),
        schedule_to_start_timeout=HOST_PICKUP_TIMEOUT,
        retry_policy=READ_RETRY,
    )
    sample, network = await asyncio.gather(
        workflow.execute_activity(
            probe_host,
            HostProbeInput(pool_task_queue=pool_queue) if pool_queue else HostProbeInput(),
            start_to_close_timeout=timedelta(seconds=30),
            summary=f"{host}: probe host CPU, memory, disk, network",
            **options,
        ),
        workflow.execute_activity(
            probe_network,
            NetworkProbeInput(targets=targets),
            start_to_close_timeout=timedelta(seconds=60),
            summary=f"{host}: probe TCP latency to " + (", ".join(targets) or "no targets"),
            **options,
        ),
        return_exceptions=True,
    )
    return sample, network


Settings = Callable[[], AutopilotSettings]


async def check_model_variants(state: AutopilotState, settings: Settings, queue: str) -> None:
    """Every `model_variant_check_interval`: variants registered but never A/B tested, as findings."""
    now = workflow.now()
    if not due(state, "variants_checked_at", settings().model_variant_check_interval):
        return
    try:
        found = await on_research_queue(
            queue,
            untested_model_variants,
            None,
            timedelta(minutes=1),
            "model variants never A/B tested",
        )
    except ActivityError as error:  # no research worker, or the registry is down: look again later
        workflow.logger.warning("could not read the model registry: %s", error.cause or error)
        state.model_findings = []  # stale findings would keep proposing tests
        return
    state.model_findings = [new_variant_finding(v, now) for v in found[:MAX_VARIANT_FINDINGS]]


async def check_agent_versions(state: AutopilotState, settings: Settings, queue: str) -> None:
    """Every `agent_version_check_interval`: the anomaly detector's active version. A promotion or a
    rollback takes effect here; the detectors' learnt state carries on under the new parameters."""
    now = workflow.now()
    checked = state.agents_checked_at
    if checked is not None and now < checked + settings().agent_version_check_interval:
        return
    state.agents_checked_at = now
    try:
        pointer = await on_research_queue(
            queue,
            active_agent_parameters,
            ActiveAgentInput(agent=ANOMALY_DETECTOR.name),
            timedelta(seconds=30),
            "the anomaly detector's active version",
        )
    except ActivityError as error:  # no research worker: keep the parameters we have
        workflow.logger.warning("could not read the agents' active versions: %s", error.cause or error)
        return
    if pointer is None and state.anomaly_version is not None:
        # Never evolved (or only bootstrapped by an older release): this release's shipped defaults.
        workflow.logger.info("anomaly detector back on the shipped parameters")
        state.anomaly_version, state.anomaly_parameters = None, None
        return
    if pointer is not None and pointer.commit != state.anomaly_version:
        workflow.logger.info("anomaly detector now runs version %s", pointer.commit[:10])
        if pointer.code_changed:  # workflow code cannot change under a running history
            workflow.logger.warning(
                "version %s changes the detector's code: this autopilot applies its parameters; "
                "its code runs with workers built from it",
                pointer.commit[:10],
            )
        state.anomaly_version, state.anomaly_parameters = pointer.commit, pointer.parameters


async def check_agent_goals(state: AutopilotState, settings: Settings, queue: str) -> None:
    """Every `agent_goal_check_interval` (the first one interval after start): agents short of their
    goals, as findings the planner answers with `evolve_agent`."""
    now = workflow.now()
    if not due(state, "goals_checked_at", settings().agent_goal_check_interval):
        return
    try:
        short = await on_research_queue(
            queue,
            agent_shortfalls,
            ShortfallInput(cooldown=settings().agent_evolve_cooldown),
            timedelta(minutes=10),
            "agents short of their goals",
        )
    except ActivityError as error:
        workflow.logger.warning("could not check the agents' goals: %s", error.cause or error)
        state.agent_findings = []
        return
    cooldown = settings().agent_evolve_cooldown
    planned = state.agents_evolve_planned_at
    state.agent_findings = [
        Finding(
            kind="agent_below_goal",
            metric=s.metric,
            value=s.figure,
            threshold=s.goal,
            message=shortfall_finding_message(s),
            observed_at=now,
            subject=s.agent,
            params={"agent": s.agent},
        )
        for s in short
        if s.agent not in planned or now >= planned[s.agent] + cooldown
    ]


def due(state: AutopilotState, checked_field: str, interval: timedelta) -> bool:
    """True once every `interval`, the first time one interval after start (a fresh stack has
    nothing new to find); records the look in the state field."""
    now, checked = workflow.now(), getattr(state, checked_field)
    if checked is not None and now < checked + interval:
        return False
    setattr(state, checked_field, now)
    return checked is not None


async def on_research_queue(
    queue: str, activity: Callable[..., Awaitable[Any]], arg: object, timeout: timedelta, summary: str
) -> Any:
    """A read on the research queue (full workers): gives up soon if none picks it up. `activity` is the
    read's typed stub, which names the activity and its result type."""
    return await workflow.execute_activity(
        activity,
        *([] if arg is None else [arg]),
        task_queue=queue,
        schedule_to_start_timeout=REGISTRY_PICKUP_TIMEOUT,
        start_to_close_timeout=timeout,
        retry_policy=READ_RETRY,
        summary=summary,
    )
