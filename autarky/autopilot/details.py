"""What the autopilot shows: its `status` query and the UI's "current details" (pure code).

The workflow passes its state and what only it knows (running actions, pending approvals, the
workflow clock); nothing here calls a workflow API, so it renders the same inside the sandbox and
in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from autarky.autopilot.actions import PRIORS
from autarky.autopilot.policy import decision as engine
from autarky.autopilot.policy import learning
from autarky.autopilot.policy.remediation import PLAYBOOK
from autarky.autopilot.settings import AutopilotSettings
from autarky.autopilot.types import ActionRecord, ActionStatus, AutopilotState, AutopilotStatus
from autarky.core.approval import ApprovalRequest
from autarky.core.findings import Finding
from autarky.selfmod.agents import ANOMALY_DETECTOR


def on_host(host: str | None) -> str:
    return f" on {host}" if host else ""


def build_status(
    state: AutopilotState,
    settings: AutopilotSettings,
    *,
    pending: int,
    running: int,
    findings: list[Finding],
    now: datetime,
) -> AutopilotStatus:
    started = state.started_at or now
    if settings.simulation:
        label = "simulating"
    elif pending:
        label = "waiting for approval"
    else:
        label = "running"
    decision = settings.decision
    samples = {h: (hs.window[-1] if hs.window else None) for h, hs in state.hosts.items()}
    return AutopilotStatus(
        state=label,
        simulation=settings.simulation,
        started_at=state.started_at,
        uptime_seconds=(now - started).total_seconds(),
        iterations=state.iterations,
        runs=state.runs,
        pending_approvals=pending,
        queued_actions=sum(1 for r in state.queued if r.status == ActionStatus.QUEUED),
        active_actions=running,
        completed_actions=state.totals.get("succeeded", 0) + state.totals.get("failed", 0),
        totals=dict(state.totals),
        agent_versions={ANOMALY_DETECTOR.name: state.anomaly_version} if state.anomaly_version else {},
        success_probabilities={
            t: round(engine.probability(state.knowledge.get(t), p, decision, now), 4)
            for t, p in PRIORS.items()
        },
        expected_improvements={
            t: round(
                learning.expected_improvement(
                    state.knowledge.get(t),
                    playbook_figure(t),
                    decision.improvement_prior_strength,
                    now,
                    decision.evidence_half_life,
                ),
                4,
            )
            for t in PRIORS
        },
        knowledge=dict(state.knowledge),
        findings=findings,
        last_sample=next((p for p in samples.values() if p is not None), None),
        hosts=samples,
        snoozes=[z for z in state.snoozes if z.until > now],
    )


def playbook_figure(action_type: str) -> float:
    """The playbook's highest expected improvement for an action type (for the status query)."""
    figures = [i for entries in PLAYBOOK.values() for (t, _, i, _) in entries if t == action_type]
    return max(figures, default=0.0)


def render_details(
    state: AutopilotState,
    *,
    simulation: bool,
    running: Sequence[ActionRecord],
    pending: Sequence[ApprovalRequest],
    now: datetime,
) -> str:
    """Markdown for the UI's "current details": what it is doing and what waits for a person."""
    mode = "SIMULATION (executes nothing)" if simulation else "running"
    lines = [f"**Autopilot** {mode} · iteration {state.iterations} · run {state.runs + 1}"]
    for host, hs in state.hosts.items():
        name = f"`{host}`"
        if hs.window:
            p = hs.window[-1]
            latency = f"{p.network_latency_ms:.1f} ms" if p.network_latency_ms is not None else "n/a"
            lines.append(
                f"{name}: CPU {p.cpu_percent:.0f} %, memory {p.memory_percent:.0f} %, "
                f"disk {p.disk_percent:.0f} %, latency {latency}"
                + (f" (probe failed {hs.probe_failures}× in a row)" if hs.probe_failures else "")
            )
        if hs.findings:
            lines.append(f"Findings on {name}: " + "; ".join(f.message for f in hs.findings))
    if pending:
        lines.append("**Waiting for your approval:**")
        lines += [
            f"- `{a.approval_id}` {a.subject}. Why: {a.why}. Expires {a.expires_at:%H:%M:%S} UTC. "
            f"`autarky approve {a.approval_id} --reason …` or `autarky reject {a.approval_id} --reason … "
            "[--snooze 4h]`"
            for a in pending
        ]
    snoozed = [z for z in state.snoozes if z.until > now]
    if snoozed:
        lines.append("Snoozed (not proposed again until):")
        lines += [
            f"- {z.action_type}{on_host(z.host)} until {z.until:%Y-%m-%d %H:%M} UTC ({z.why})"
            for z in snoozed
        ]
    if running:
        lines.append(
            "Running: "
            + ", ".join(
                f"{r.action_id} {r.decision.candidate.action_type}{on_host(r.decision.candidate.host)}"
                for r in running
            )
        )
    t = state.totals
    lines.append(
        f"Totals: {t.get('succeeded', 0)} succeeded, {t.get('failed', 0)} failed, "
        f"{t.get('rejected', 0) + t.get('expired', 0)} rejected/expired, {t.get('simulated', 0)} simulated, "
        f"{t.get('nothing_to_do', 0)} with nothing to do"
    )
    return "\n".join(lines)
