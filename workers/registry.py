"""Which workflows and activities each kind of worker registers, on which task queue."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from activities.infra.hosts import discover_hosts
from activities.infra.local_pool_scaling import LocalPoolScalingActivities
from activities.infra.probes import HostProbe, probe_network
from activities.infra.remediation import RemediationActivities
from activities.infra.scaling_requests import ScalingRequestActivities
from activities.infra.task_queues import probe_task_queue
from activities.infra.worker_pool import LocalWorkerPool, WorkerPoolActivities
from activities.models.abtest_plan import plan_model_abtest
from activities.models.abtest_requests import ABTestRequestActivities
from activities.models.registry_activities import ModelRegistryActivities
from activities.research.analysis import AnalysisActivities
from activities.research.digest import DigestActivities
from activities.research.gather import GatherActivities
from activities.research.store import ResearchStoreActivities
from activities.selfmod import genesis_registry
from activities.selfmod.activities import SelfModActivities
from activities.selfmod.genesis import GenesisActivities
from activities.selfmod.live_metrics import LiveMetricsActivities
from activities.selfmod.requests import EvolutionRequestActivities
from activities.selfmod.review import PromotionReviewActivities
from activities.selfmod.tools import log_startup_problems
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.hosts import host_queue
from autarky.core.settings import AutarkySettings
from workflows.ab_test import ModelABTestWorkflow
from workflows.agent_genesis import AgentGenesisWorkflow
from workflows.autopilot import AutopilotWorkflow
from workflows.autopilot_actions import AutopilotActionWorkflow
from workflows.autopilot_host import AutopilotHostWorkflow
from workflows.experiment import ExperimentWorkflow
from workflows.housekeeping import HousekeepingWorkflow
from workflows.research import ResearchCycleWorkflow
from workflows.scaling import ScalerWorkflow
from workflows.self_modify import SelfModificationWorkflow

WORKFLOWS: list[type] = [
    AutopilotWorkflow,
    AutopilotHostWorkflow,
    AutopilotActionWorkflow,
    HousekeepingWorkflow,
    ScalerWorkflow,
    ResearchCycleWorkflow,
    ExperimentWorkflow,
    ModelABTestWorkflow,
    SelfModificationWorkflow,
    AgentGenesisWorkflow,
]


def main_activities(settings: AutarkySettings) -> list[Callable[..., Any]]:
    """The shared task queue: what any host may run (notifications land in the knowledge base)."""
    return [
        discover_hosts,
        probe_task_queue,
        RemediationActivities.from_settings(settings).notify,
        ScalingRequestActivities(settings).request_scaling,
        ABTestRequestActivities(settings).start_model_abtest,
        EvolutionRequestActivities(settings).start_agent_evolution,
        *aws_activities(settings),
    ]


def aws_activities(settings: AutarkySettings) -> list[Callable[..., Any]]:
    """The AWS scaling provider, on workers configured with AWS resources only: boto3 costs a worker
    about 12 MiB, which the embedded default (no AWS) does not pay."""
    if not settings.scaling.resources:  # every configured resource is an AWS one
        return []
    from activities.infra.aws_scaling import AwsScalingActivities

    aws = AwsScalingActivities(settings.scaling.aws)
    return [aws.read_capacity, aws.set_capacity]


def host_activities(settings: AutarkySettings) -> list[Callable[..., Any]]:
    """A host's own queue: what must run on that machine (its probes, its cache; notify too)."""
    remediation = RemediationActivities.from_settings(settings)
    # The host's local pool (its members' load) is under data_dir, which every worker of the host shares.
    probe_host = HostProbe(settings.data_dir).probe_host
    return [probe_host, probe_network, remediation.notify, remediation.clear_cache, remediation.prune_cache]


def control_activities(pool: LocalWorkerPool, settings: AutarkySettings) -> list[Callable[..., Any]]:
    """A host's control queue: served only by the process owning the host's local worker pool."""
    scaling = LocalPoolScalingActivities(pool, settings.host_id, settings.pool_task_queue)
    # A restarted member counts as healthy once it polls the pool's queue, as the scaler counts it.
    restart = WorkerPoolActivities(pool, settings.worker_pool_warmup, scaling.pool_queue, settings.host_id)
    return [
        restart.restart_worker_pool,
        scaling.read_capacity,
        scaling.set_capacity,
    ]


def research_activities(
    settings: AutarkySettings, environ: Mapping[str, str] = os.environ
) -> list[Callable[..., Any]]:
    """The research queue: sources, knowledge base, analysis, digests. Their libraries (arxiv, PyGithub,
    SQLAlchemy, the LLM SDKs) are imported when a cycle first needs them, not when the worker starts."""
    kb = KnowledgeBaseHandle(settings.knowledge_db_url)
    store = ResearchStoreActivities(settings, kb, environ)
    analysis = AnalysisActivities(settings, kb, environ)
    return [
        store.open_cycle,
        store.unanalysed_items,
        store.count_unanalysed,
        store.close_cycle,
        store.record_analysis_failure,
        store.experiment_candidates,
        store.open_experiment,
        store.update_experiment,
        GatherActivities(settings, kb).gather_source,
        analysis.analyse_item,
        analysis.plan_experiment,
        DigestActivities(settings, kb).write_digest,
        *model_registry_activities(settings, kb),
        *selfmod_activities(settings, environ, kb, selfmod_host_queue(settings)),
        EvolutionRequestActivities(settings).start_evolution,
    ]


def selfmod_host_queue(settings: AutarkySettings) -> str:
    """This host's self-modification queue, which a full worker serves beside the research queue: a run's
    steps after its first go there, so they share this host's files (workflows/self_modify.py)."""
    return host_queue(settings.research_task_queue, settings.host_id)


def selfmod_activities(
    settings: AutarkySettings,
    environ: Mapping[str, str],
    kb: KnowledgeBaseHandle | None = None,
    host_task_queue: str | None = None,
) -> list[Callable[..., Any]]:
    """Self-modification: candidates, the sandbox, benchmarks, the review of a promotion (its diff goes to
    the knowledge base), promotion and rollback; `host_task_queue` is this host's own, when served."""
    log_startup_problems()  # a warning, not a refusal: this worker may never be asked to evolve an agent
    kb = kb or KnowledgeBaseHandle(settings.knowledge_db_url)
    selfmod = SelfModActivities(settings, environ, kb, host_task_queue)
    review = PromotionReviewActivities(settings, kb)
    genesis_registry.install(kb)  # agents made by genesis, known to agent_spec (autarky/selfmod/genesis.py)
    genesis = GenesisActivities(settings, environ, kb)
    return [
        genesis.generate_agent,
        genesis.try_generated_agent,
        genesis.register_generated_agent,
        selfmod.snapshot_agent,
        selfmod.make_candidates,
        selfmod.propose_patches,
        selfmod.check_candidate,
        selfmod.measure,
        selfmod.compare,
        review.review_promotion,
        selfmod.promote_version,
        selfmod.rollback_version,
        selfmod.active_agent_parameters,
        selfmod.agent_shortfalls,
        LiveMetricsActivities(settings, kb).live_counts,
    ]


def model_registry_activities(settings: AutarkySettings, kb: KnowledgeBaseHandle) -> list[Callable[..., Any]]:
    """The model registry (in the knowledge base): what A/B tests read and change."""
    registry = ModelRegistryActivities(settings, kb)
    return [
        registry.describe_model_slot,
        registry.set_model_split,
        registry.promote_model_variant,
        registry.restore_model_incumbent,
        registry.model_arm_stats,
        registry.ensure_default_model_slots,
        registry.evaluate_offline_batch,
        registry.renew_model_split,
        registry.model_window_stats,
        registry.evaluate_offline_paired,
        plan_model_abtest,  # pure computation (numpy), beside the registry the test reads
        registry.untested_model_variants,
    ]
