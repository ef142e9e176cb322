"""LLM gateway types: requests, results, prices, the provider choice (settings: autarky.llm.settings).

Pure pydantic, no SDK imports: workflows and the configuration import this module, and the `openai` /
`anthropic` packages are loaded only by the gateway that calls them (activities.models).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

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


# Dated snapshots (gpt-5-mini-2025-08-07, claude-haiku-4-5-20251001) cost what their alias costs.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def price_of(prices: Mapping[str, ModelPrice], model: str) -> ModelPrice | None:
    """The model's price in `prices`: by its name, else by the name without a snapshot date; None when
    it has none there. The full lookup (these local prices, then the genai-prices table) is
    autarky.llm.prices.pricing."""
    return prices.get(model) or prices.get(_SNAPSHOT.sub("", model))


def cost_of(prices: Mapping[str, ModelPrice], model: str, tokens_in: int, tokens_out: int) -> float:
    """USD for one call at the price `prices` give the model; 0 when they give none."""
    price = price_of(prices, model)
    if price is None:
        return 0.0
    return (tokens_in * price.input + tokens_out * price.output) / 1_000_000


class ProviderChoice(BaseModel):
    """The provider the gateway talks to. `key_env` names the variable holding the key (never the key)."""

    kind: ProviderKind
    model: str
    base_url: str
    key_env: str | None


class LlmRequest(BaseModel):
    """One question. `purpose` is a short label for logs and errors (the prompt itself is never logged)."""

    system: str = ""
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(1024, ge=1, le=128_000)
    # The setting a person raises when max_tokens is too small (named in the error), if there is one.
    max_tokens_setting: str | None = None
    # The budget this call also counts against besides the day's, e.g. a research cycle's id (the cycle's
    # budget, llm.budget_per_cycle_usd); None: the day's budget only.
    budget_scope: str | None = Field(None, max_length=200)
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
