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

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from autarky.autopilot.settings import AutopilotSettings
from autarky.core.durations import Duration
from autarky.llm.types import LlmSettings
from autarky.research.settings import ResearchSettings
from autarky.scaling.settings import ScalingSettings
from autarky.selfmod.types import EvolutionSettings

CONFIG_FILE_ENV = "AUTARKY_CONFIG"
DEFAULT_CONFIG_FILE = "autarky.toml"


class ConfigError(ValueError):
    """Configuration that Autarky cannot start with; the message is meant for a person."""


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
    (autarky.core.redaction), not token shapes.
    """
    from autarky.core.redaction import current_secrets

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
    values are handed to autarky.core.redaction, so that logs hide them whatever their shape.
    """
    from autarky.core.redaction import remember

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
    from autarky.core.redaction import REDACTED, SECRET_NAME, redact_value

    field = _field_at(loc)
    if (field is not None and _is_secret(field.annotation)) or any(
        isinstance(part, str) and SECRET_NAME.search(part) for part in loc
    ):
        return REDACTED
    if isinstance(value, str) and value in secrets:  # even one too short to look for inside text
        return REDACTED
    return repr(redact_value(value, _worth_looking_for(secrets)))


def _one_line(message: str, secrets: set[str] | frozenset[str] | tuple[()]) -> str:
    from autarky.core.redaction import current_secrets, redact_text

    hidden = _worth_looking_for(frozenset(secrets) | current_secrets())
    return " ".join(redact_text(message, hidden).split())


def _worth_looking_for(secrets: frozenset[str]) -> frozenset[str]:
    """Secrets long enough to search text for: a 4-letter one would blank out ordinary words."""
    from autarky.core.redaction import MIN_SECRET_LENGTH

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
    return "check the spelling (each capability's settings.py holds its section)"


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
