"""When a research cycle must stop analysing: its own budget or the day's is spent, by its own tally.

The tally is the cycle's view only: the LLM gateway checks the spending ledger before every paid call
and refuses one that could pass a budget (LlmBudgetSpent, which stops the cycle as "stopped for budget").
Checked before each analysis starts. Free analyses (the offline analyser, a free local model) never
spend anything and so are never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from autarky.core.findings import Finding, Severity
from autarky.research.types import ResearchReport


@dataclass
class ResearchBudget:
    per_cycle_usd: float
    per_day_usd: float
    spent_today_before_usd: float  # by earlier cycles and experiments today
    spent_usd: float = 0.0  # by this cycle so far
    paid: bool = True  # False: the analyser costs nothing (offline, or no price)

    def spend(self, cost: float) -> None:
        self.spent_usd += cost
        if cost > 0:
            self.paid = True

    def exhausted(self) -> str | None:
        """Why analysis must stop now, or None to go on."""
        if not self.paid:
            return None
        if self.spent_usd >= self.per_cycle_usd:
            return f"the cycle's budget of ${self.per_cycle_usd:.2f} is spent (${self.spent_usd:.4f})"
        today = self.spent_today_before_usd + self.spent_usd
        if today >= self.per_day_usd:
            return f"today's budget of ${self.per_day_usd:.2f} is spent (${today:.4f})"
        return None


def research_finding(report: ResearchReport, now: datetime) -> Finding | None:
    """The autopilot's finding for a cycle that failed, or stopped for budget or time; None for a good one."""
    if report.status == "stopped_for_budget":
        kind, severity, what = "research_budget_spent", Severity.WARNING, "stopped for budget"
    elif report.status == "failed":
        kind, severity, what = "research_cycle_failed", Severity.WARNING, "failed"
    elif report.status == "stopped_for_time":  # the same finding: a cycle that cannot finish its work
        kind, severity, what = "research_cycle_failed", Severity.WARNING, "ran out of time"
    else:
        return None
    return Finding(
        kind=kind,
        metric="research",
        value=1.0,
        threshold=1.0,
        severity=severity,
        message=f"research cycle {report.cycle_id} {what}" + (f": {report.reason}" if report.reason else ""),
        observed_at=now,
        subject=report.cycle_id,
    )
