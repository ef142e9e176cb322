"""AutopilotWorkflow's patches: what it keeps only so that runs begun under older releases replay.

See docs/patches.md for the lifecycle. A deprecated patch's call stays until every run recorded its
marker as deprecated; then its function here and its calls in workflows/autopilot.py are deleted.
`analyze-round-2` also reaches `_analyze2` (workflows/autopilot.py) and `shipped_defaults`
(workflows/autopilot_reads.py).
The calls stand where `workflow.patched` stood, so a history's markers meet them in the recorded order.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from autarky.autopilot.policy.detection import round1_detectors
    from autarky.autopilot.settings import AnalysisSettings

# Deprecated (every run is on the new path; the old one is deleted).
STATISTICAL_DETECTORS = "statistical-detectors"
PER_HOST_ROUTING = "per-host-routing"
POOL_SCALING = "pool-scaling"
MODEL_VARIANTS = "model-variants"
EVOLVED_AGENTS = "evolved-agents"
# Patched: runs begun under release 16 may still be on the old path (the round-1 detectors).
ANALYZE_ROUND_2 = "analyze-round-2"


def at_run_start() -> bool:
    """The markers each run records first, in their order; whether the run has Analyze round 2."""
    workflow.deprecate_patch(PER_HOST_ROUTING)
    workflow.deprecate_patch(POOL_SCALING)
    return workflow.patched(ANALYZE_ROUND_2)


def statistical_detectors() -> None:
    """Before the detectors observe a sample or report findings."""
    workflow.deprecate_patch(STATISTICAL_DETECTORS)


def model_variants() -> None:
    """Before the look for model variants never A/B tested."""
    workflow.deprecate_patch(MODEL_VARIANTS)


def evolved_agents() -> None:
    """Before the reads of the agents' active versions and goals."""
    workflow.deprecate_patch(EVOLVED_AGENTS)


def detector_settings(settings: AnalysisSettings, analyze2: bool) -> AnalysisSettings:
    """A run begun before Analyze round 2 keeps the round-1 detectors, so its history replays."""
    return settings if analyze2 else round1_detectors(settings)
