"""LLM gateway types: the `LlmSettings` configuration, requests, results and the provider choice.

Pure pydantic, no SDK imports: workflows and the configuration import this module, and the `openai` /
`anthropic` packages are loaded only by the gateway that calls them (activities.models).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field, field_validator, model_validator

from autarky.core.durations import Duration

ProviderKind = Literal["openai", "anthropic", "openai-compatible"]
ProviderSetting = Literal["auto", "openai", "anthropic", "openai-compatible", "offline"]

OPENAI_KEY_ENV = "OPENAI_API_KEY"
ANTHROPIC_KEY_ENV = "ANTHROPIC_API_KEY"
# Passed to the SDKs explicitly: left out, they would read OPENAI_BASE_URL / ANTHROPIC_BASE_URL from the
# process environment behind the settings' back.
OPENAI_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"

DEFAULT_OPENAI_MODEL = "gpt-5-mini"
DEFAULT_ANTHROPIC_MODEL = "claude-haiku-4-5"
DEFAULT_COMPATIBLE_MODEL = "llama3.1:8b"  # Ollama's name; vLLM and llama.cpp name models by path


class ModelPrice(BaseModel):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


# List prices (USD per million tokens) of the default models and their nearest siblings, as published by
# OpenAI and Anthropic. A self-hosted model costs nothing per token.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-5": ModelPrice(input=1.25, output=10.00),
    "gpt-5-mini": ModelPrice(input=0.25, output=2.00),
    "gpt-5-nano": ModelPrice(input=0.05, output=0.40),
    "claude-haiku-4-5": ModelPrice(input=1.00, output=5.00),
    DEFAULT_COMPATIBLE_MODEL: ModelPrice(input=0.0, output=0.0),
}

# Dated snapshots (gpt-5-mini-2025-08-07, claude-haiku-4-5-20251001) cost what their alias costs.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def price_of(prices: Mapping[str, ModelPrice], model: str) -> ModelPrice | None:
    """The model's price: by its name, else by the name without a snapshot date; None when unknown."""
    return prices.get(model) or prices.get(_SNAPSHOT.sub("", model))


def cost_of(prices: Mapping[str, ModelPrice], model: str, tokens_in: int, tokens_out: int) -> float:
    """USD for one call; 0 for a model the table does not price."""
    price = price_of(prices, model)
    if price is None:
        return 0.0
    return (tokens_in * price.input + tokens_out * price.output) / 1_000_000


class LlmSettings(BaseModel):
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
    # Merged over DEFAULT_PRICES: an entry here adds a model or overrides a default price.
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    budget_per_cycle_usd: float = Field(0.50, ge=0)
    budget_per_day_usd: float = Field(5.00, ge=0)

    @field_validator("prices")
    @classmethod
    def _over_defaults(cls, prices: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        return {**DEFAULT_PRICES, **prices}

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


class ProviderChoice(BaseModel):
    """The provider the gateway talks to. `key_env` names the variable holding the key (never the key)."""

    kind: ProviderKind
    model: str
    base_url: str
    key_env: str | None


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


class LlmRequest(BaseModel):
    """One question. `purpose` is a short label for logs and errors (the prompt itself is never logged)."""

    system: str = ""
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(1024, ge=1, le=64_000)
    # None: the provider's default. Not sent to Anthropic (its SDK 2.x has no sampling parameters) and
    # best left None for OpenAI's reasoning models (gpt-5…), which refuse any temperature but 1.
    temperature: float | None = Field(None, ge=0, le=2)
    purpose: str = Field("llm", min_length=1, max_length=64)


T = TypeVar("T", bound=BaseModel)


class LlmUsage(BaseModel):
    provider: ProviderKind
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class LlmResult(BaseModel, Generic[T]):
    """The validated answer and what it cost (both calls when the first answer needed a repair)."""

    output: T
    provider: ProviderKind
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    repaired: bool = False
    latency_ms: int = 0
