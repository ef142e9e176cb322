"""Risk-based approval (pure code, no I/O; runs inside workflow code): how risky is promoting this challenger?

The workflow asks a person before promoting when the score is above the test's `approval_risk` setting
(ABTestInput.approval_risk; a score of exactly the setting does not ask). The score combines three factors,
each a risk r in [0, 1], as independent reasons to look (a noisy-OR):

    score = 1 − (1 − r_provider) · (1 − r_cost) · (1 − r_margin)

so any one factor alone can ask for a person, two moderate ones together can, and a factor of 0 changes
nothing. The factors:

- provider change: r = 0.6 when the providers differ (case and spaces ignored), else 0. A new provider
  brings new data terms, outages and quotas that the test's window does not show, so on its own it is
  above the default setting of 0.5.
- cost increase (relative, x = challenger / incumbent − 1 per call): r = 1 − 2^(−x / 0.2), i.e. +20 % → 0.5,
  +10 % → 0.29, +25 % → 0.58, +50 % → 0.82; cheaper or equal → 0; from a free incumbent to a paid
  challenger → 1.
- guardrail margin (the headroom h to the nearest guardrail, autarky.models.guardrails.guardrail_headroom:
  0 at a limit, 1 far from every limit): r = (1 − h)², so a challenger that used 30 % of an allowance adds
  0.09 and one that used 80 % adds 0.64 (alone above 0.5 once less than ~29 % of the allowance is left).
  From release 30 the A/B test counts what was used with evidence (each excess and level lowered by one
  standard error, `HEADROOM_Z`), so arms that answer alike rarely ask a person on noise. None (no guardrail
  measured): 0, said in the reasons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PROVIDER_CHANGE_RISK = 0.6
COST_HALF_RISK = 0.2  # the relative cost increase that alone scores 0.5


@dataclass(frozen=True)
class PromotionRisk:
    score: float  # in [0, 1]
    reasons: list[str] = field(default_factory=list)  # one per factor that added risk (or was unknown)

    def text(self) -> str:
        return f"risk {self.score:.2f}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")


def _cost_risk(incumbent: float, challenger: float) -> tuple[float, float]:
    """(risk, relative increase); the increase is inf from a free incumbent."""
    if challenger <= incumbent:
        return 0.0, (challenger / incumbent - 1) if incumbent > 0 else 0.0
    if incumbent <= 0:
        return 1.0, math.inf
    rise = challenger / incumbent - 1
    return 1 - 2 ** (-rise / COST_HALF_RISK), rise


def promotion_risk(
    incumbent_provider: str,
    challenger_provider: str,
    incumbent_cost_per_call: float,
    challenger_cost_per_call: float,
    guardrail_margin: float | None,
) -> PromotionRisk:
    """The promotion's risk score and its reasons (see the module for the formula)."""
    for name, cost in (
        ("incumbent_cost_per_call", incumbent_cost_per_call),
        ("challenger_cost_per_call", challenger_cost_per_call),
    ):
        if not (isinstance(cost, int | float) and math.isfinite(cost) and cost >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {cost!r}")
    if guardrail_margin is not None and not (
        isinstance(guardrail_margin, int | float) and 0 <= guardrail_margin <= 1
    ):
        raise ValueError(f"guardrail_margin must be within [0, 1] or None, got {guardrail_margin!r}")
    reasons: list[str] = []
    keep = 1.0  # Π (1 − r)

    if incumbent_provider.strip().lower() != challenger_provider.strip().lower():
        keep *= 1 - PROVIDER_CHANGE_RISK
        reasons.append(
            f"provider changes from {incumbent_provider} to {challenger_provider} "
            f"(risk {PROVIDER_CHANGE_RISK:.2f})"
        )

    cost_risk, rise = _cost_risk(incumbent_cost_per_call, challenger_cost_per_call)
    if cost_risk > 0:
        keep *= 1 - cost_risk
        change = "from nothing" if math.isinf(rise) else f"by {100 * rise:.1f} %"
        reasons.append(
            f"cost per call rises {change} ({incumbent_cost_per_call:.6g} → {challenger_cost_per_call:.6g}) "
            f"(risk {cost_risk:.2f})"
        )

    if guardrail_margin is None:
        reasons.append("no guardrail was measured (risk not counted)")
    else:
        margin_risk = (1 - guardrail_margin) ** 2
        if margin_risk > 0:
            keep *= 1 - margin_risk
            reasons.append(
                f"only {100 * guardrail_margin:.0f} % of a guardrail's allowance left "
                f"(risk {margin_risk:.2f})"
            )
    return PromotionRisk(score=min(1.0, max(0.0, 1 - keep)), reasons=reasons)
