"""What a model's call costs: the local prices (`llm.prices`) first, then the maintained genai-prices table.

genai-prices (PyPI, by Pydantic) ships its price data inside the package; only its bundled snapshot is
read (never `UpdatePrices`, which fetches), so pricing works offline and changes only with the package's
version. A model that neither prices is unpriced: the gateway refuses to call it, since no budget could
stop it. A local OpenAI-compatible server is free unless `llm.prices` gives its model a price.
The package is imported on the first lookup, not with this module (worker idle memory).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal
from urllib.parse import urlparse

from autarky.llm.types import ModelPrice, ProviderKind, price_of

PriceSource = Literal["settings", "genai-prices", "free"]

# genai-prices' provider ids for ours (an OpenAI-compatible server is never looked up there).
_PROVIDER_ID = {"openai": "openai", "anthropic": "anthropic"}


@dataclass(frozen=True)
class Pricing:
    """How one model is priced. `cost` is USD for a call's tokens (tiered prices included)."""

    kind: ProviderKind
    model: str
    source: PriceSource
    local: ModelPrice | None = None  # the price from settings

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        if self.source == "free":
            return 0.0
        if self.local is not None:
            return (tokens_in * self.local.input + tokens_out * self.local.output) / 1_000_000
        return _table_cost(_PROVIDER_ID[self.kind], self.model, tokens_in, tokens_out)

    @property
    def free(self) -> bool:
        return self.source == "free" or (
            self.local is not None and self.local.input == 0 and self.local.output == 0
        )


def pricing(
    prices: Mapping[str, ModelPrice], kind: ProviderKind, model: str, base_url: str | None = None
) -> Pricing | None:
    """The model's pricing, or None when it has no price (neither in `prices` nor in genai-prices). An
    OpenAI-compatible server on this machine or a private network (Ollama, vLLM, llama.cpp) is free; a
    hosted one (OpenRouter, Together, …) bills, so it needs a price like any unknown model."""
    local = price_of(prices, model)
    if local is not None:
        return Pricing(kind, model, "settings", local)
    if kind == "openai-compatible":
        return Pricing(kind, model, "free") if base_url is not None and is_local_url(base_url) else None
    if _in_table(_PROVIDER_ID[kind], model):
        return Pricing(kind, model, "genai-prices")
    return None


def is_local_url(url: str) -> bool:
    """Whether `url` names this machine, a private network or a name only a local network resolves."""
    host = (urlparse(url).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name: localhost, a compose service, *.local, *.internal
        return host == "localhost" or "." not in host or host.endswith((".local", ".internal", ".lan"))
    return address.is_loopback or address.is_private or address.is_link_local


def price_settings(model: str) -> str:
    """The settings that give `model` a price, for error messages."""
    prefix = f"AUTARKY_LLM__PRICES__{model}"
    return f"{prefix}__INPUT and {prefix}__OUTPUT (USD per million tokens)"


@lru_cache(maxsize=256)
def _in_table(provider_id: str, model: str) -> bool:
    try:
        _table_cost(provider_id, model, 0, 0)
    except LookupError:
        return False
    return True


def _table_cost(provider_id: str, model: str, tokens_in: int, tokens_out: int) -> float:
    from genai_prices import Usage, calc_price  # ~5 MiB of price data: on the first paid call only

    usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out)
    found = calc_price(usage, model, provider_id=provider_id, genai_request_timestamp=datetime.now(UTC))
    return float(found.total_price)
