"""Configuration: environment (``AUTARKY_…``, nested with ``__``) over an optional ``autarky.toml``.

Invalid configuration stops start-up with one message naming the field and the bad value
(`load_settings` raises `ConfigError`). Unknown keys are refused at every depth: the sections do it
themselves while the settings load (autarky.core.settings_section); each capability's section lives in
its own ``settings.py``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from autarky.autopilot.settings import AutopilotSettings
from autarky.core.durations import Duration
from autarky.core.notification_settings import NotificationSettings
from autarky.core.settings_section import SecretSetting, loading_settings, nearest_key
from autarky.llm.settings import LlmSettings
from autarky.models.settings import ABTestSettings
from autarky.research.settings import ResearchSettings
from autarky.scaling.settings import ScalingSettings
from autarky.selfmod.settings import EvolutionSettings

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
    knowledge_base_url: SecretSetting | None = None  # secret: a URL may carry a password
    # Also read from OPENAI_API_KEY / ANTHROPIC_API_KEY, which win (`llm_environ`).
    openai_api_key: SecretSetting | None = None
    anthropic_api_key: SecretSetting | None = None
    autopilot: AutopilotSettings = Field(default_factory=AutopilotSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    research: ResearchSettings = Field(default_factory=ResearchSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    abtest: ABTestSettings = Field(default_factory=ABTestSettings)

    @model_validator(mode="wrap")
    @classmethod
    def _sections_refuse_unknown_keys(
        cls, data: Any, handler: ModelWrapValidatorHandler[AutarkySettings]
    ) -> AutarkySettings:
        # BaseSettings.__init__ passes no validation context: the sections learn it from here.
        with loading_settings():
            return handler(data)

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
    """The variable setting `loc`; for a list item, the one holding the whole list (as JSON)."""
    names: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break
        names.append(str(part).upper())
    return "AUTARKY_" + "__".join(names)


def describe_validation_error(
    error: ValidationError,
    *,
    secrets: set[str] | frozenset[str] = frozenset(),
    origin: Callable[[tuple[Any, ...]], str | None] = lambda loc: None,
    unknown: list[str] | None = None,
) -> str:
    """One line: per unknown key its place, origin and the nearest valid key; per bad value the dotted
    field, the environment variable, the value, and why.

    `origin` tells where an unknown key came from; `unknown`: lines about unknown keys found beside
    the validation (`_unknown_env_sections`), which come first. No secret's value is shown: not the
    value of a secret setting, not the values in `secrets` nor those of secret-looking environment
    variables (autarky.core.redaction), not token shapes.
    """
    from autarky.core.redaction import current_secrets

    hidden = frozenset(secrets) | current_secrets()
    lines = list(unknown or [])
    values = []
    for item in error.errors():
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(_unknown_setting(loc, origin(loc), (item.get("ctx") or {}).get("nearest")))
            continue
        shown = "<missing>" if item["type"] == "missing" else _shown(loc, item.get("input"), hidden)
        values.append(f"{_dotted(loc)} ({_env_name(loc)}) = {shown}: {item['msg']}")
    return _one_line("invalid configuration: " + "; ".join(lines + values), hidden)


def load_settings(**overrides: Any) -> AutarkySettings:
    """Read the settings, raising `ConfigError` with a readable message when they are invalid.

    The secret settings' values are handed to autarky.core.redaction, so that logs hide them whatever
    their shape.
    """
    from autarky.core.redaction import remember

    dropped = [_unknown_setting(path, name) for path, name in _unknown_env_sections()]
    with loading_settings() as loading:
        try:
            settings = AutarkySettings(**overrides)
        except ValidationError as error:
            message = describe_validation_error(
                error, secrets=loading.secrets, origin=_origins(overrides), unknown=dropped
            )
            raise ConfigError(message) from None
        except SettingsError as error:  # e.g. AUTARKY_AUTOPILOT='{not json'
            raise ConfigError(_one_line(f"invalid configuration: {error}", loading.secrets)) from None
        except (OSError, ValueError) as error:  # e.g. a TOML file that does not parse
            raise ConfigError(_one_line(f"invalid configuration file: {error}", loading.secrets)) from None
    if dropped:
        raise ConfigError(_one_line("invalid configuration: " + "; ".join(dropped), loading.secrets))
    remember(loading.secrets)
    return settings


# --- helpers of describe_validation_error and load_settings ------------------------------------------


def _shown(loc: tuple[Any, ...], value: Any, secrets: frozenset[str]) -> str:
    """The bad value as the message shows it: hidden when it is, or belongs to, a secret (a secret
    setting's errors carry ``***`` as their input already)."""
    from autarky.core.redaction import REDACTED, SECRET_NAME, redact_value

    if any(isinstance(part, str) and SECRET_NAME.search(part) for part in loc):
        return REDACTED
    if isinstance(value, str) and (value == REDACTED or value in secrets):  # even a short one
        return REDACTED
    return repr(redact_value(value, _worth_looking_for(secrets)))


def _one_line(message: str, secrets: set[str] | frozenset[str]) -> str:
    from autarky.core.redaction import current_secrets, redact_text

    hidden = _worth_looking_for(frozenset(secrets) | current_secrets())
    return " ".join(redact_text(message, hidden).split())


def _worth_looking_for(secrets: frozenset[str]) -> frozenset[str]:
    """Secrets long enough to search text for: a 4-letter one would blank out ordinary words."""
    from autarky.core.redaction import MIN_SECRET_LENGTH

    return frozenset(secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH)


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _unknown_setting(path: tuple[Any, ...], origin: str | None, nearest: str | None = None) -> str:
    where = f" ({origin})" if origin else ""
    return f"unknown setting {_dotted(path)!r}{where}; {_suggestion(path, nearest)}"


def _suggestion(path: tuple[Any, ...], nearest: str | None) -> str:
    """The nearest valid key beside the unknown one (the section's, or the top level's); else the same
    name in another section."""
    import difflib

    if nearest is None and len(path) == 1:
        nearest = nearest_key(path[0], AutarkySettings)
    if nearest is not None:
        return f"did you mean {nearest!r}?"
    everywhere = {_dotted(p): p[-1] for p in _setting_paths(AutarkySettings.model_construct(), ())}
    near = difflib.get_close_matches(
        str(path[-1]).lower(), sorted(set(everywhere.values())), n=1, cutoff=0.75
    )
    if near:
        candidates = sorted(dotted for dotted, name in everywhere.items() if name == near[0])
        return f"did you mean {candidates[0]!r}?"
    return "check the spelling (each capability's settings.py holds its section)"


def _setting_paths(settings: BaseModel, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """The dotted places of the default settings: every field, and those of the sections within."""
    for name in type(settings).model_fields:
        yield (*prefix, name)
        if isinstance(value := getattr(settings, name), BaseModel):
            yield from _setting_paths(value, (*prefix, name))


def _env_config() -> tuple[str, str, bool]:
    config = AutarkySettings.model_config
    prefix = config.get("env_prefix") or ""
    delimiter = config.get("env_nested_delimiter") or "__"
    return prefix, delimiter, bool(config.get("case_sensitive"))


def _unknown_env_sections() -> list[tuple[tuple[str, ...], str]]:
    """``AUTARKY_AUTOPILT__MONITOR_INTERVAL``: a nested variable under no top-level setting at all, with
    its name.

    pydantic-settings drops such variables before the model sees them. A variable without the delimiter
    (``AUTARKY_CONFIG``, a tool's own ``AUTARKY_…``) is left alone: it may not be meant as a setting.
    """
    prefix, delimiter, case_sensitive = _env_config()
    fields = {key if case_sensitive else key.lower() for key in AutarkySettings.model_fields}
    wanted = prefix if case_sensitive else prefix.lower()
    found = []
    for name in os.environ:
        folded = name if case_sensitive else name.lower()
        if not folded.startswith(wanted) or delimiter not in folded[len(wanted) :]:
            continue
        path = tuple(folded[len(wanted) :].split(delimiter))
        if path[0] and path[0] not in fields:
            found.append((path, name))
    return found


def _origins(overrides: dict[str, Any]) -> Callable[[tuple[Any, ...]], str | None]:
    """Where an unknown key came from: the first source, by priority, whose raw input holds it."""
    from pydantic_settings import (
        DotEnvSettingsSource,
        EnvSettingsSource,
        InitSettingsSource,
        SecretsSettingsSource,
    )

    cls = AutarkySettings
    try:
        sources = cls.settings_customise_sources(
            cls,
            init_settings=InitSettingsSource(cls, init_kwargs=overrides),
            env_settings=EnvSettingsSource(cls),
            dotenv_settings=DotEnvSettingsSource(cls),
            file_secret_settings=SecretsSettingsSource(cls),
        )
        inputs = [(source, source()) for source in sources]
    except (OSError, ValueError):  # read a moment ago; changed since: the message goes without
        inputs = []

    def origin(loc: tuple[Any, ...]) -> str | None:
        for source, data in inputs:
            if _holds(data, loc):
                return _origin(source, loc)
        return None

    return origin


def _holds(data: Any, loc: tuple[Any, ...]) -> bool:
    """Whether raw input has a value at `loc` (keys of dicts, indexes of lists)."""
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and -len(data) <= part < len(data)
        if not (in_dict or in_list):
            return False
        data = data[part]
    return True


def _origin(source: PydanticBaseSettingsSource, loc: tuple[Any, ...]) -> str:
    """A source as the message names it: the environment variable, the variable holding the key (as
    JSON), the file."""
    from pydantic_settings import EnvSettingsSource, InitSettingsSource

    if isinstance(source, TomlConfigSettingsSource):
        files = source.toml_file_path
        names = [str(f) for f in files] if isinstance(files, list | tuple) else [str(files)]
        return "in " + ", ".join(names)
    if isinstance(source, EnvSettingsSource):
        prefix, delimiter, case_sensitive = _env_config()
        names = {(name if case_sensitive else name.upper()): name for name in os.environ}
        path = [str(part) for part in loc]
        for length in range(len(path), 0, -1):
            wanted = prefix + delimiter.join(path[:length])
            name = names.get(wanted if case_sensitive else wanted.upper())
            if name is not None:
                return name if length == len(path) else f"in {name}"
        return "environment"
    if isinstance(source, InitSettingsSource):
        return "argument"
    return f"from {type(source).__name__}"
