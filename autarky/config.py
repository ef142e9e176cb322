"""Configuration: environment (``AUTARKY_…``, nested with ``__``) over an optional ``autarky.toml``.

Invalid configuration stops start-up with one message naming the field and the bad value
(`load_settings` raises `ConfigError`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from autarky.detectors.anomaly import AnomalyConfig
from autarky.durations import Duration
from autarky.evolution_types import EvolutionSettings
from autarky.llm_types import LlmSettings
from autarky.policy.scaling_types import ScalingPolicy

CONFIG_FILE_ENV = "AUTARKY_CONFIG"
DEFAULT_CONFIG_FILE = "autarky.toml"


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


# What one step of each metric is worth as it is measured (psutil percentages come to 0.1; latency is
# timed to 1 ms by many probes and jitters by that much, so 1 → 3 ms is no anomaly).
METRIC_RESOLUTION = {
    "cpu_percent": 0.1,
    "memory_percent": 0.1,
    "disk_percent": 0.1,
    "temperature_celsius": 1.0,
    "network_latency_ms": 1.0,
}


class AnalysisSettings(BaseModel):
    """Analyze stage, statistical part: anomaly scores, leak detection and early warnings."""

    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    # A metric whose anomaly score reaches this becomes a finding. Chosen for an alert budget of one false
    # anomaly alert per metric per day at 30 s sampling, for the long-lived detector (`make bench-nab`
    # prints the table on NAB's development set: 0.59 per metric per day here, NAB score 21). 0.9 gives
    # 1.2 a day (NAB 38) and reports CPU going from a steady 20 % to 60 %, which 0.95 does not; one per
    # host per day (four metrics) needs 0.975 (NAB 15); NAB's own best threshold (about 0.64, score 65)
    # means about 13 false alerts per host per day.
    anomaly_threshold: float = Field(0.95, gt=0, le=1)
    anomaly_metrics: list[str] = Field(
        default_factory=lambda: ["cpu_percent", "memory_percent", "disk_percent", "network_latency_ms"]
    )
    metric_resolution: dict[str, float] = Field(default_factory=lambda: dict(METRIC_RESOLUTION))
    # Trend tests that hold their false-alarm rate on steps and autocorrelated noise (Analyze round 2);
    # False gives round 1's.
    robust_trends: bool = True
    # A host clock set back: trend series move their history back with it, and anomaly findings stamped
    # later than the hold ahead are let go. False gives round 1's (points ignored until the clock catches
    # up). `round1_detectors` sets both of these and the detector's `memory` for older histories.
    follow_clock_steps: bool = True
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
    # Critical priority orders a remedy first; it asks a person only when it is also this risky.
    critical_approval_risk_threshold: float = Field(0.3, ge=0, le=1)
    # Learned improvement is shrunk toward the playbook's figure with this many pseudo-observations.
    improvement_prior_strength: float = Field(2.0, gt=0)
    # Old outcomes count half after this long, so a change in an action's behaviour shows within days.
    evidence_half_life: Duration = Field(timedelta(days=3), gt=timedelta(0))


class LocalPoolPolicy(ScalingPolicy):
    """The local pool's bounds: one machine's cores go only so far (each member is a Python process)."""

    max_capacity: int = Field(4, ge=1)


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
    # host:port pairs whose TCP connect latency and loss are probed; None: the Temporal server in use
    # (filled in by the client that starts or reconfigures the autopilot, see autarky.temporal).
    network_targets: list[str] | None = None
    # How often the autopilot looks for hosts (workers polling the shared task queue).
    host_discovery_interval: Duration = Field(timedelta(minutes=1), gt=timedelta(0))
    # A rejected or expired approval holds its remedy back on that host for this long.
    rejection_snooze: Duration = Field(timedelta(hours=24), ge=timedelta(0))
    # Actions that report progress (pool restarts) are retried on another worker after this silence.
    action_heartbeat_timeout: Duration = Field(timedelta(minutes=2), gt=timedelta(0))
    # Continue-as-new after this many loop iterations (or earlier when the server suggests it).
    iterations_per_run: int = Field(500, ge=1)
    # Scaling the local worker pool from CPU and the pool queue's backlog (autarky.policy.scaling).
    pool_scaling: bool = True
    # A model variant registered but never A/B tested becomes a finding, and the planner may start its test.
    abtest_new_variants: bool = True
    model_variant_check_interval: Duration = Field(timedelta(minutes=10), gt=timedelta(0))
    # The anomaly detector runs with the parameters of its active version (self-modification promotes
    # and rolls back versions); read this often.
    evolved_agents: bool = True
    agent_version_check_interval: Duration = Field(timedelta(minutes=10), gt=timedelta(0))
    # An agent short of its goal (measured once per version) becomes a finding; the planner may start its
    # self-modification (not again within agent_evolve_cooldown).
    agent_goal_check_interval: Duration = Field(timedelta(days=1), gt=timedelta(0))
    agent_evolve_cooldown: Duration = Field(timedelta(days=7), ge=timedelta(0))
    pool_policy: LocalPoolPolicy = Field(default_factory=lambda: LocalPoolPolicy())
    rules: ThresholdRules = Field(default_factory=ThresholdRules)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    decision: DecisionThresholds = Field(default_factory=DecisionThresholds)

    @field_validator("pool_policy", mode="before")
    @classmethod
    def _any_scaling_policy(cls, value: Any) -> Any:
        # A plain ScalingPolicy (e.g. from the Python client) is taken as given, field by field.
        if isinstance(value, ScalingPolicy) and not isinstance(value, LocalPoolPolicy):
            return value.model_dump()
        return value

    @field_validator("monitor_interval", "analysis_interval", "optimization_interval", "executor_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value

    @field_validator("network_targets")
    @classmethod
    def _host_port(cls, targets: list[str] | None) -> list[str] | None:
        for target in targets or []:
            host, sep, port = target.rpartition(":")
            bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
            if not sep or not host or bare_ipv6 or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{target!r} is not host:port (write IPv6 as [::1]:7233)")
        return targets


class AwsSettings(BaseModel):
    """Where the AWS providers reach AWS. Credentials: these keys when set, else boto3's own chain
    (environment, shared profile, instance role)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None  # e.g. a LocalStack or moto server
    profile: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    # Plain EC2 instances Autarky runs itself (`aws-ec2/<group>` resources) are launched like this.
    ec2_image_id: str | None = None
    ec2_instance_type: str = "t3.micro"
    ec2_subnet_id: str | None = None
    request_timeout: Duration = Field(timedelta(seconds=30), gt=timedelta(0))


class ScalableResource(BaseModel):
    """A resource the scalers manage besides the local pool, e.g. `aws-asg/web` with its own bounds."""

    resource: str = Field(pattern=r"^(aws-asg|aws-ecs|aws-ec2)/[A-Za-z0-9._:@/-]+$")
    policy: ScalingPolicy = Field(default_factory=ScalingPolicy)


class ScalingSettings(BaseModel):
    resources: list[ScalableResource] = Field(default_factory=list)
    # The saga waits this long for a new capacity to be healthy before it compensates.
    health_timeout: Duration = Field(timedelta(minutes=5), gt=timedelta(0))
    health_poll_interval: Duration = Field(timedelta(seconds=10), gt=timedelta(0))
    # How often a scaler compares its resource with the desired capacity (replaces killed members).
    reconcile_interval: Duration = Field(timedelta(minutes=1), gt=timedelta(0))
    approval_timeout: Duration = Field(timedelta(hours=1), gt=timedelta(0))
    aws: AwsSettings = Field(default_factory=AwsSettings)


class ResearchSettings(BaseModel):
    """Where the research cycle looks for papers and repositories (arXiv and GitHub), and how politely."""

    arxiv_base_url: str = Field("https://export.arxiv.org/api/query", min_length=1)
    arxiv_categories: list[str] = Field(default_factory=lambda: ["cs.AI", "cs.MA", "cs.DC", "cs.LG"])
    keywords: list[str] = Field(
        default_factory=lambda: [
            "AI agents",
            "autonomous systems",
            "LLM inference",
            "distributed systems",
            "ML optimisation",
        ]
    )
    arxiv_page_size: int = Field(50, ge=1, le=2000)
    arxiv_max_results: int = Field(200, ge=1, le=10000)
    # arXiv's terms of use: no more than one request every 3 seconds.
    arxiv_delay_seconds: float = Field(3.0, ge=0)
    github_base_url: str = Field("https://api.github.com", min_length=1)
    github_topics: list[str] = Field(default_factory=lambda: ["llm", "ai-agents", "mlops"])
    github_languages: list[str] = Field(default_factory=lambda: ["Python"])
    github_max_results: int = Field(50, ge=1, le=1000)
    # Optional; the caller also reads GITHUB_TOKEN. Never logged.
    github_token: SecretStr | None = None
    # arXiv asks API clients to say who they are: add a contact (AUTARKY_RESEARCH__USER_AGENT).
    user_agent: str = Field("Autarky research cycle (self-maintaining AI platform)", min_length=1)
    # The cycle: how often (the Schedule), how far back the very first one looks, how much it analyses.
    enabled: bool = True
    interval: Duration = Field(timedelta(hours=1), ge=timedelta(minutes=1))
    first_lookback: Duration = Field(timedelta(days=2), gt=timedelta(0))
    max_items_per_cycle: int = Field(300, ge=0)
    analysis_concurrency: int = Field(4, ge=1, le=32)
    # An item scoring above this starts an experiment (a plan, then a person's decision).
    experiment_threshold: float = Field(0.7, ge=0, le=1)
    experiment_approval_timeout: Duration = Field(timedelta(days=7), gt=timedelta(0))
    # At most this many experiments start per cycle (each asks the LLM for a plan); the rest wait a cycle.
    max_experiments_per_cycle: int = Field(10, ge=0)
    # Digests go to <data_dir>/research/digests/; with an s3://bucket/prefix URI to S3 as well.
    digest_s3_uri: str | None = Field(None, pattern=r"^s3://[^/]+(/.*)?$")
    digest_s3_endpoint_url: str | None = None


class AutarkySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTARKY_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path(".autarky")
    # This machine's name among Autarky's hosts: its worker polls the host task queue `<task_queue>@<host_id>`
    # and findings, actions and approvals name it.
    host_id: str = Field(default_factory=socket.gethostname, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    task_queue: str = Field("autarky", min_length=1)
    # Control activities (managing the local worker pool) run only on the `autarky up` process.
    control_task_queue: str = Field("autarky-control", min_length=1)
    # The local pool's members poll this queue (`<pool_task_queue>@<host_id>`) beside the shared one;
    # its pollers tell which members are healthy, its backlog whether the pool is big enough.
    pool_task_queue: str = Field("autarky-pool", min_length=1)
    # The research cycle's activities (sources, knowledge base, LLM): served by full workers only, so the
    # pool members never load those libraries.
    research_task_queue: str = Field("autarky-research", min_length=1)
    namespace: str = "default"
    # Embedded Temporal dev server (used when no TEMPORAL_ADDRESS / envconfig profile is set).
    server_ip: str = "127.0.0.1"
    server_port: int = Field(7233, gt=0, lt=65536)
    ui_port: int = Field(8233, gt=0, lt=65536)
    # Extra `autarky worker` processes that `autarky up` keeps on this machine (activities only).
    worker_pool_size: int = Field(1, ge=0, le=64)
    # A restarted pool member is measured after this warm-up (imports, first polls), not at once.
    worker_pool_warmup: Duration = Field(timedelta(seconds=30), ge=timedelta(0))
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Prometheus: the SDK's own metrics and Autarky's; None switches one off.
    metrics_host: str = "127.0.0.1"
    sdk_metrics_port: int | None = Field(9464, gt=0, lt=65536)
    metrics_port: int | None = Field(9465, gt=0, lt=65536)
    cache_max_age: Duration = timedelta(days=7)
    # The research knowledge base (SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db);
    # None: SQLite in the data directory (`knowledge_db_url`).
    knowledge_base_url: SecretStr | None = None  # secret: a URL may carry a password
    # Also read from OPENAI_API_KEY / ANTHROPIC_API_KEY, which win (`llm_environ`).
    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    autopilot: AutopilotSettings = Field(default_factory=AutopilotSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    research: ResearchSettings = Field(default_factory=ResearchSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def llm_environ(self, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """The environment the LLM gateway reads its keys from: `environ`, plus the AUTARKY_-prefixed
        keys where the plain variables are unset."""
        merged = dict(environ)
        for name, secret in (
            ("OPENAI_API_KEY", self.openai_api_key),
            ("ANTHROPIC_API_KEY", self.anthropic_api_key),
        ):
            if secret is not None and not merged.get(name, "").strip():
                merged[name] = secret.get_secret_value()
        return merged

    @property
    def knowledge_db_url(self) -> str:
        """The knowledge base's URL: the configured one, else ``sqlite:///<data_dir>/knowledge.db``."""
        if self.knowledge_base_url is not None and self.knowledge_base_url.get_secret_value().strip():
            return self.knowledge_base_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'knowledge.db').as_posix()}"

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


def describe_validation_error(
    error: ValidationError,
    *,
    secrets: set[str] | frozenset[str] = frozenset(),
    unknown: list[str] | None = None,
) -> str:
    """One line: per bad field the dotted field, the environment variable, the value, and why.

    `unknown`: lines about unknown keys found beforehand (`_check_sources`), which come first and
    replace pydantic's own ``extra_forbidden`` errors. No secret's value is shown: not the value of a
    secret setting, not the values in `secrets` nor those of secret-looking environment variables
    (autarky.redaction), not token shapes.
    """
    from autarky.redaction import current_secrets

    hidden = frozenset(secrets) | current_secrets()
    lines = list(unknown or [])
    for item in error.errors():
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            if not any(line.startswith(f"unknown setting {_dotted(loc)!r} ") for line in lines):
                lines.append(_unknown_setting(loc, None))
            continue
        shown = "<missing>" if item["type"] == "missing" else _shown(loc, item.get("input"), hidden)
        lines.append(f"{_dotted(loc)} ({_env_name(loc)}) = {shown}: {item['msg']}")
    return _one_line("invalid configuration: " + "; ".join(lines), hidden)


def load_settings(**overrides: Any) -> AutarkySettings:
    """Read the settings, raising `ConfigError` with a readable message when they are invalid.

    Unknown keys are refused in every section, though only the top level forbids extras: the nested
    models are also workflow payloads, which must accept fields that a newer client adds. So the raw
    input of each settings source is walked against the models here instead. The secret settings'
    values are handed to autarky.redaction, so that logs hide them whatever their shape.
    """
    from autarky.redaction import remember

    unknown, secrets = _check_sources(overrides)
    try:
        settings = AutarkySettings(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, secrets=secrets, unknown=unknown)) from None
    except (OSError, ValueError) as error:  # e.g. a TOML file that does not parse
        raise ConfigError(_one_line(f"invalid configuration file: {error}", secrets)) from None
    if unknown:
        raise ConfigError(_one_line("invalid configuration: " + "; ".join(unknown), secrets))
    remember(secrets)
    return settings


# --- helpers of describe_validation_error and load_settings ------------------------------------------


def _check_sources(overrides: dict[str, Any]) -> tuple[list[str], set[str]]:
    """Unknown keys (one message each) and secret setting values in the raw input of every source."""
    from pydantic_settings import (
        DotEnvSettingsSource,
        EnvSettingsSource,
        InitSettingsSource,
        SecretsSettingsSource,
    )

    settings_cls = AutarkySettings
    try:
        sources = settings_cls.settings_customise_sources(
            settings_cls,
            init_settings=InitSettingsSource(settings_cls, init_kwargs=overrides),
            env_settings=EnvSettingsSource(settings_cls),
            dotenv_settings=DotEnvSettingsSource(settings_cls),
            file_secret_settings=SecretsSettingsSource(settings_cls),
        )
    except (OSError, ValueError) as error:  # the TOML source reads its file when it is made
        raise ConfigError(_one_line(f"invalid configuration file: {error}", ())) from None
    unknown: list[str] = []
    secrets: set[str] = set()
    for source in sources:
        try:
            data = source()
        except (OSError, ValueError) as error:  # e.g. AUTARKY_AUTOPILOT='{not json'
            what = "configuration file" if isinstance(source, TomlConfigSettingsSource) else "configuration"
            raise ConfigError(_one_line(f"invalid {what}: {error}", secrets)) from None
        found: list[tuple[str, ...]] = []
        _walk(settings_cls, data, (), found, secrets)
        if isinstance(source, EnvSettingsSource) and not isinstance(source, DotEnvSettingsSource):
            found += _unknown_env_sections(source)
        for path in found:
            line = _unknown_setting(path, _origin(source, path))
            if line not in unknown:
                unknown.append(line)
    return unknown, secrets


def _walk(
    model: type[BaseModel],
    data: Any,
    path: tuple[str, ...],
    unknown: list[tuple[str, ...]],
    secrets: set[str],
) -> None:
    """Collect the paths of keys `model` has no field for, recursing into nested models.

    Fields holding anything but one model (numbers, durations, lists, dicts) are leaves: their values
    are the field's business. A model that allows extra fields accepts every key.
    """
    if not isinstance(data, dict):
        return
    fields = _fields_by_key(model)
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            if model.model_config.get("extra") != "allow":
                unknown.append((*path, str(key)))
            continue
        if _is_secret(field.annotation):
            if isinstance(value, str) and value:
                secrets.add(value)
            continue
        if (nested := _model_in(field.annotation)) is not None:
            _walk(nested, value, (*path, str(key)), unknown, secrets)


def _fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by every key that may name them: the field name and string aliases."""
    from pydantic import AliasChoices

    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        keys[name] = field
        for alias in (field.alias, field.validation_alias):
            choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
            for choice in choices:
                if isinstance(choice, str):
                    keys[choice] = field
    return keys


def _unwrap(annotation: Any) -> list[Any]:
    """The types a field annotation allows: inside Optional / unions and Annotated."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (`X` or `X | None`); None for leaves and for unions of several models."""
    models = [t for t in _unwrap(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    return models[0] if len(models) == 1 else None


def _is_secret(annotation: Any) -> bool:
    """SecretStr, SecretBytes, Secret[...] (also optional)."""
    import typing

    from pydantic import Secret, SecretBytes

    for allowed in _unwrap(annotation):
        kind = typing.get_origin(allowed) or allowed
        if isinstance(kind, type) and issubclass(kind, SecretStr | SecretBytes | Secret):
            return True
    return False


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The FieldInfo a validation error's location names, or None (list items, unknown keys)."""
    model: type[BaseModel] | None = AutarkySettings
    field = None
    for part in loc:
        if model is None or not isinstance(part, str):
            return None
        field = _fields_by_key(model).get(part)
        if field is None:
            return None
        model = _model_in(field.annotation)
    return field


def _shown(loc: tuple[Any, ...], value: Any, secrets: frozenset[str]) -> str:
    """The bad value as the message shows it: hidden when it is, or belongs to, a secret."""
    from autarky.redaction import REDACTED, SECRET_NAME, redact_value

    field = _field_at(loc)
    if (field is not None and _is_secret(field.annotation)) or any(
        isinstance(part, str) and SECRET_NAME.search(part) for part in loc
    ):
        return REDACTED
    if isinstance(value, str) and value in secrets:  # even one too short to look for inside text
        return REDACTED
    return repr(redact_value(value, _worth_looking_for(secrets)))


def _one_line(message: str, secrets: set[str] | frozenset[str] | tuple[()]) -> str:
    from autarky.redaction import current_secrets, redact_text

    hidden = _worth_looking_for(frozenset(secrets) | current_secrets())
    return " ".join(redact_text(message, hidden).split())


def _worth_looking_for(secrets: frozenset[str]) -> frozenset[str]:
    """Secrets long enough to search text for: a 4-letter one would blank out ordinary words."""
    from autarky.redaction import MIN_SECRET_LENGTH

    return frozenset(secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _unknown_setting(path: tuple[Any, ...], origin: str | None) -> str:
    where = f" ({origin})" if origin else ""
    return f"unknown setting {_dotted(path)!r}{where}; {_suggestion(tuple(str(p) for p in path))}"


def _suggestion(path: tuple[str, ...]) -> str:
    """The nearest valid key beside the unknown one; else the same name in another section."""
    import difflib

    model: type[BaseModel] | None = AutarkySettings
    for part in path[:-1]:
        field = _fields_by_key(model).get(part) if model else None
        model = _model_in(field.annotation) if field is not None else None
    key = path[-1].lower()
    if model is not None:
        near = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
        if near:
            return f"did you mean {near[0]!r}?"
    everywhere = {_dotted(p): p[-1] for p in _setting_paths(AutarkySettings, ())}
    near = difflib.get_close_matches(key, list(set(everywhere.values())), n=1, cutoff=0.75)
    if near:
        candidates = sorted(dotted for dotted, name in everywhere.items() if name == near[0])
        return f"did you mean {candidates[0]!r}?"
    return "check the spelling (every setting is in autarky/config.py)"


def _setting_paths(model: type[BaseModel], prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    paths = []
    for name, field in model.model_fields.items():
        paths.append((*prefix, name))
        if (nested := _model_in(field.annotation)) is not None:
            paths += _setting_paths(nested, (*prefix, name))
    return paths


def _env_settings(source: Any) -> tuple[str, str, bool]:
    config = AutarkySettings.model_config
    prefix = getattr(source, "env_prefix", None) or config.get("env_prefix") or ""
    delimiter = getattr(source, "env_nested_delimiter", None) or config.get("env_nested_delimiter") or "__"
    case_sensitive = bool(getattr(source, "case_sensitive", None) or config.get("case_sensitive"))
    return prefix, delimiter, case_sensitive


def _unknown_env_sections(source: Any) -> list[tuple[str, ...]]:
    """``AUTARKY_AUTOPILT__MONITOR_INTERVAL``: a nested variable under no top-level setting at all.

    pydantic-settings drops such variables before the model sees them. A variable without the delimiter
    (``AUTARKY_CONFIG``, a tool's own ``AUTARKY_…``) is left alone: it may not be meant as a setting.
    """
    prefix, delimiter, case_sensitive = _env_settings(source)
    fields = {key if case_sensitive else key.lower() for key in _fields_by_key(AutarkySettings)}
    found = []
    for name in os.environ:
        folded = name if case_sensitive else name.lower()
        wanted = prefix if case_sensitive else prefix.lower()
        if not folded.startswith(wanted) or delimiter not in folded[len(wanted) :]:
            continue
        path = tuple(folded[len(wanted) :].split(delimiter))
        if path[0] and path[0] not in fields:
            found.append(path)
    return found


def _origin(source: Any, path: tuple[str, ...]) -> str:
    """Where an unknown key came from: its environment variable, the variable holding it as JSON, a file."""
    from pydantic_settings import EnvSettingsSource, InitSettingsSource

    if isinstance(source, TomlConfigSettingsSource):
        files = source.toml_file_path
        names = [str(f) for f in files] if isinstance(files, list | tuple) else [str(files)]
        return "in " + ", ".join(names)
    if isinstance(source, EnvSettingsSource):
        prefix, delimiter, case_sensitive = _env_settings(source)
        names = {(name if case_sensitive else name.upper()): name for name in os.environ}
        for length in range(len(path), 0, -1):
            wanted = prefix + delimiter.join(path[:length])
            name = names.get(wanted if case_sensitive else wanted.upper())
            if name is not None:
                return name if length == len(path) else f"in {name}"
        return "environment"
    if isinstance(source, InitSettingsSource):
        return "argument"
    return f"from {type(source).__name__}"
