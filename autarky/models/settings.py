"""The A/B test settings section (`[abtest]`): how the tests the autopilot starts run. A person's test
(`autarky abtest start`) takes its options instead; these are its defaults too."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from autarky.core.durations import Duration
from autarky.core.settings_section import SettingsSection


class ABTestSettings(SettingsSection):
    share: float = Field(0.10, gt=0, lt=1)  # the challenger's final traffic share
    ramp: list[float] = Field(default_factory=lambda: [0.01])  # shares before the final one
    calls_per_step: int = Field(100, ge=1)  # challenger calls a ramp step is held for
    design: str = Field("group_sequential", pattern="^(group_sequential|always_valid)$")
    min_improvement: float = Field(0.10, gt=0, lt=10)  # relative
    evaluation_interval: Duration = Field(timedelta(minutes=1), gt=timedelta(0))
    min_duration: Duration = Field(timedelta(days=1), ge=timedelta(0))  # a daily cycle at least
    max_duration: Duration = Field(timedelta(days=7), gt=timedelta(0))
    # Promotion asks a person when the variant's risk (cost, provider change) is above this.
    approval_risk: float = Field(0.5, ge=0, le=1)
