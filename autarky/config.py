"""Configuration: environment (``AUTARKY_…``, nested with ``__``) over an optional ``autarky.toml``.

Invalid configuration stops start-up with one message naming the field and the bad value
(`load_settings` raises `ConfigError`).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from autarky.detectors.anomaly import AnomalyConfig

CONFIG_FILE_ENV = "AUTARKY_CONFIG"
DEFAULT_CONFIG_FILE = "autarky.toml"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _parse_duration(value: Any) -> Any:
    """Accept ``30``, ``"0.5"``, ``"30s"``, ``"5m"``, ``"1h"`` (seconds by default) besides ISO 8601."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


class ConfigError(ValueError):
    """Configuration that Autarky cannot start with; the message is meant for a person."""


class ThresholdRules(BaseModel):
    """Analyze stage: a metric above its threshold over the recent window is a finding."""

    cpu_percent: float = Field(85.0, gt=0, le=100)
    memory_percent: float = Field(85.0, gt=0, le=100)
    disk_percent: float = Field(85.0, gt=0, le=100)
    network_latency_ms: float = Field(50.0, gt=0)
    network_loss_ratio: float = Field(0.2, gt=0, le=1)
    # A finding this far over 100 % (e.g. disk ≥ 95 %) becomes critical and so needs approval.
    critical_percent: float = Field(95.0, gt=0, le=100)
    window: int = Field(5, ge=1, le=500, description="samples the rules look at")


# Metrics of a Monitor sample (autarky.types.MetricPoint) that anomaly detection can watch.
ANOMALY_METRICS = {
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "network_latency_ms",
    "network_loss_ratio",
    "temperature_celsius",
}


class AnalysisSettings(BaseModel):
    """Analyze stage, statistical part: anomaly scores, leak detection and early warnings."""

    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    # A metric whose anomaly score reaches this becomes a finding (NAB's best threshold is printed
    # by `make bench-nab`; this default is a little stricter because an alert costs a person's time).
    anomaly_threshold: float = Field(0.75, gt=0, le=1)
    anomaly_metrics: list[str] = Field(
        default_factory=lambda: ["cpu_percent", "memory_percent", "disk_percent", "network_latency_ms"]
    )
    # An anomaly is a moment; its finding stays active this long (and at least one
    # optimization_interval, so that a plan round sees it).
    anomaly_hold: Duration = Field(timedelta(minutes=10), gt=timedelta(0))
    # Trend series (leaks, disk, temperature): at most one point per spacing, the newest `trend_points`.
    trend_spacing: Duration = timedelta(minutes=1)
    trend_points: int = Field(120, ge=10, le=1000)
    leak_p_value: float = Field(0.01, gt=0, lt=1)
    # A pool member's leak is remedied by a restart only when it would hit the limit this soon;
    # slower leaks are reported (a restart every half hour for a leak 50 days away helps nobody).
    leak_restart_horizon: Duration = Field(timedelta(hours=24), gt=timedelta(0))
    leak_min_span: Duration = Field(
        timedelta(minutes=30), description="history needed before a leak is called"
    )
    # The memory a process may grow to before it is in trouble; default: the host's total memory.
    process_memory_limit_bytes: int | None = Field(None, gt=0)
    disk_limit_percent: float = Field(95.0, gt=0, le=100)
    early_warning_horizon: Duration = Field(timedelta(hours=6), gt=timedelta(0))
    # At most the 60 samples the autopilot keeps in its window.
    overload_points: int = Field(20, ge=5, le=60, description="recent samples the overload test uses")

    @field_validator("anomaly_metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str]) -> list[str]:
        unknown = sorted(set(metrics) - ANOMALY_METRICS)
        if unknown:
            raise ValueError(
                f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(sorted(ANOMALY_METRICS))}"
            )
        return metrics


class DecisionThresholds(BaseModel):
    """The risk-aware decision engine's knobs (see autarky.policy.decision)."""

    min_expected_value: float = Field(0.05, ge=0, le=1)
    max_risk: float = Field(0.7, ge=0, le=1)
    risk_weight: float = Field(0.5, ge=0)
    approval_risk_threshold: float = Field(0.5, ge=0, le=1)
    prior_strength: float = Field(2.0, gt=0, description="pseudo-observations behind each prior")


class AutopilotSettings(BaseModel):
    monitor_interval: Duration = timedelta(seconds=30)
    analysis_interval: Duration = timedelta(seconds=60)
    optimization_interval: Duration = timedelta(minutes=5)
    executor_interval: Duration = timedelta(seconds=10)
    max_concurrent_actions: int = Field(3, ge=1, le=50)
    # An action type that finished this recently is not planned again (a lasting finding would
    # otherwise repeat the same remedy every plan round).
    action_cooldown: Duration = timedelta(minutes=10)
    approval_timeout: Duration = Field(timedelta(hours=1), gt=timedelta(0))
    simulation: bool = False
    network_targets: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:7233"],
        description="host:port pairs whose TCP connect latency and loss are probed",
    )
    # Continue-as-new after this many loop iterations (or earlier when the server suggests it).
    iterations_per_run: int = Field(500, ge=1)
    rules: ThresholdRules = Field(default_factory=ThresholdRules)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    decision: DecisionThresholds = Field(default_factory=DecisionThresholds)

    @field_validator("monitor_interval", "analysis_interval", "optimization_interval", "executor_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value

    @field_validator("network_targets")
    @classmethod
    def _host_port(cls, targets: list[str]) -> list[str]:
        for target in targets:
            host, sep, port = target.rpartition(":")
            bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
            if not sep or not host or bare_ipv6 or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{target!r} is not host:port (write IPv6 as [::1]:7233)")
        return targets


class AutarkySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTARKY_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path(".autarky")
    task_queue: str = Field("autarky", min_length=1)
    # Control activities (managing the local worker pool) run only on the `autarky up` process.
    control_task_queue: str = Field("autarky-control", min_length=1)
    namespace: str = "default"
    # Embedded Temporal dev server (used when no TEMPORAL_ADDRESS / envconfig profile is set).
    server_ip: str = "127.0.0.1"
    server_port: int = Field(7233, gt=0, lt=65536)
    ui_port: int = Field(8233, gt=0, lt=65536)
    # Extra `autarky worker` processes that `autarky up` keeps on this machine (activities only).
    worker_pool_size: int = Field(1, ge=0, le=64)
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Prometheus: the SDK's own metrics and Autarky's; None switches one off.
    metrics_host: str = "127.0.0.1"
    sdk_metrics_port: int | None = Field(9464, gt=0, lt=65536)
    metrics_port: int | None = Field(9465, gt=0, lt=65536)
    cache_max_age: Duration = timedelta(days=7)
    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    autopilot: AutopilotSettings = Field(default_factory=AutopilotSettings)

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))


def _env_name(loc: tuple[Any, ...]) -> str:
    return "AUTARKY_" + "__".join(str(part).upper() for part in loc if not isinstance(part, int))


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad field: the dotted field, the environment variable, the value, and why."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        field = ".".join(str(part) for part in loc)
        value = item.get("input")
        shown = "<missing>" if item["type"] == "missing" else repr(value)
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown setting {field!r} (value {shown}); check the spelling")
            continue
        lines.append(f"{field} ({_env_name(loc)}) = {shown}: {item['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(**overrides: Any) -> AutarkySettings:
    """Read the settings, raising `ConfigError` with a readable message when they are invalid."""
    try:
        return AutarkySettings(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None
    except (OSError, ValueError) as error:  # e.g. a TOML file that does not parse
        raise ConfigError(f"invalid configuration file: {error}") from None
