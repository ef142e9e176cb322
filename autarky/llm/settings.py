"""The LLM gateway's settings section (`[llm]`): the provider, its models, timeouts and the budget."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from autarky.core.durations import Duration
from autarky.core.settings_section import Section, SettingsSection
from autarky.llm.types import (
    ANTHROPIC_BASE_URL,
    ANTHROPIC_KEY_ENV,
    DEFAULT_ANTHROPIC_MODEL,
    DEFAULT_COMPATIBLE_MODEL,
    DEFAULT_OPENAI_MODEL,
    OPENAI_BASE_URL,
    OPENAI_KEY_ENV,
    ModelPrice,
    ProviderChoice,
    ProviderSetting,
)


class LlmSettings(SettingsSection):
    """Which LLM the research loop asks, how, and what it may spend (``AUTARKY_LLM__…``).

    API keys are not settings: they stay in the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, and for an
    OpenAI-compatible server the variable named by `compatible_api_key_env`), so that no payload,
    settings dump or log line carries them.
    """

    # auto: OPENAI_API_KEY set → openai; else ANTHROPIC_API_KEY → anthropic; else compatible_base_url →
    # openai-compatible; else offline (the research loop runs without an LLM).
    provider: ProviderSetting = "auto"
    openai_model: str = Field(DEFAULT_OPENAI_MODEL, min_length=1)
    anthropic_model: str = Field(DEFAULT_ANTHROPIC_MODEL, min_length=1)
    compatible_model: str = Field(DEFAULT_COMPATIBLE_MODEL, min_length=1)
    openai_base_url: str | None = Field(None, description="default https://api.openai.com/v1")
    anthropic_base_url: str | None = Field(None, description="default https://api.anthropic.com")
    # An OpenAI-compatible server: Ollama http://localhost:11434/v1, vLLM / llama.cpp http://host:8000/v1.
    compatible_base_url: str | None = None
    compatible_api_key_env: str | None = Field(
        None, description="the environment variable holding the compatible server's key, if it wants one"
    )
    # json_object: understood by nearly every OpenAI-compatible server (the schema goes into the system
    # prompt and the answer is validated); json_schema: constrained decoding, where the server has it
    # (vLLM, recent Ollama and llama.cpp).
    compatible_response_format: Literal["json_object", "json_schema"] = "json_object"
    request_timeout: Duration = Field(timedelta(seconds=60), gt=timedelta(0))
    # Local prices (USD per million tokens), by model name; they win over the genai-prices table
    # (autarky/llm/prices.py). A model priced by neither is refused: no budget could stop it.
    prices: dict[str, Section[ModelPrice]] = Field(default_factory=dict)
    # Checked against the spending ledger before every paid call (research, plans, self-modification,
    # A/B-routed calls): the day's (UTC) for every call, the cycle's for a research cycle's calls.
    budget_per_cycle_usd: float = Field(0.50, ge=0)
    budget_per_day_usd: float = Field(5.00, ge=0)
    # Completion caps. Reasoning models (gpt-5…, o-series) spend part of the cap thinking before they
    # answer, so these leave room for that; each call reserves its cap's price against the budgets.
    analysis_max_tokens: int = Field(4000, ge=64, le=128_000)
    plan_max_tokens: int = Field(8000, ge=64, le=128_000)
    # Sent as `reasoning_effort` to OpenAI's reasoning models only (gpt-5…, o1/o3/o4…). "low": scoring an
    # abstract and sketching a plan need little deliberation, and low effort keeps both the cost and the
    # share of the completion cap spent on reasoning small; "minimal" is refused by the o-series. None:
    # the model's own default (medium).
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = "low"
    # Anthropic's structured output: json_schema (the Messages API's native `output_config.format`,
    # constrained decoding) or tool (a forced tool call, for models older than structured outputs).
    anthropic_output: Literal["json_schema", "tool"] = "json_schema"

    @field_validator("openai_base_url", "anthropic_base_url", "compatible_base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url

    @model_validator(mode="after")
    def _compatible_needs_url(self) -> LlmSettings:
        if self.provider == "openai-compatible" and self.compatible_base_url is None:
            raise ValueError(
                "provider 'openai-compatible' needs compatible_base_url (e.g. http://localhost:11434/v1)"
            )
        return self


def resolve_provider(settings: LlmSettings, environ: Mapping[str, str]) -> ProviderChoice | None:
    """The configured provider, or the one `auto` finds in `environ`; None: offline."""
    provider = settings.provider

    def has(name: str) -> bool:
        return bool(environ.get(name, "").strip())

    if provider == "auto":
        if has(OPENAI_KEY_ENV):
            provider = "openai"
        elif has(ANTHROPIC_KEY_ENV):
            provider = "anthropic"
        elif settings.compatible_base_url is not None:
            provider = "openai-compatible"
        else:
            return None
    if provider == "openai":
        return ProviderChoice(
            kind="openai",
            model=settings.openai_model,
            base_url=settings.openai_base_url or OPENAI_BASE_URL,
            key_env=OPENAI_KEY_ENV,
        )
    if provider == "anthropic":
        return ProviderChoice(
            kind="anthropic",
            model=settings.anthropic_model,
            base_url=settings.anthropic_base_url or ANTHROPIC_BASE_URL,
            key_env=ANTHROPIC_KEY_ENV,
        )
    if provider == "openai-compatible" and settings.compatible_base_url is not None:
        return ProviderChoice(
            kind="openai-compatible",
            model=settings.compatible_model,
            base_url=settings.compatible_base_url,
            key_env=settings.compatible_api_key_env,
        )
    return None  # offline
