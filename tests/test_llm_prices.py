"""Prices that exist (genai-prices, local overrides, refusal of the unpriced), reasoning models, request
classes, and the structured output each provider is sent (issue 26, items 4 and 7)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError

from activities.models.llm import LlmGateway
from autarky.llm.prices import pricing
from autarky.llm.settings import LlmSettings
from autarky.llm.types import LlmRequest, ModelPrice
from tests.llm_servers import (
    AnthropicServer,
    OpenAIServer,
    Reply,
    anthropic_json,
    openai_completion,
    openai_error,
)

ROOT = Path(__file__).resolve().parents[1]


class Inner(BaseModel):
    name: str
    weight: float = Field(ge=0, le=1)


class Answer(BaseModel):
    score: float = Field(ge=0, le=1)
    tags: list[str] = Field(default_factory=list)
    inner: Inner | None = None


def request(**extra: Any) -> LlmRequest:
    return LlmRequest(
        **({"system": "Be brief.", "prompt": "Rate this.", "max_tokens": 300, "purpose": "rate"} | extra)
    )


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


def openai_gateway(server: OpenAIServer, **extra: Any) -> LlmGateway:
    settings = LlmSettings(
        provider="openai", openai_base_url=server.base_url, request_timeout=timedelta(seconds=5), **extra
    )
    return LlmGateway(settings, environ={"OPENAI_API_KEY": "sk-test"}, ledger=None)


async def refused(gateway: LlmGateway, req: LlmRequest | None = None) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await gateway.complete(req or request(), Answer)
    return caught.value


# ------------------------------------------------------------------------------------------------- prices


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("openai", "gpt-4.1"),
        ("openai", "gpt-4o-mini"),
        ("openai", "o4-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-1"),
        ("openai", "gpt-5-mini"),  # the defaults, and a dated snapshot
        ("openai", "gpt-5-mini-2025-08-07"),
        ("anthropic", "claude-haiku-4-5"),
    ],
)
def test_the_models_people_use_are_priced(kind: Any, model: str) -> None:
    found = pricing({}, kind, model)
    assert found is not None and found.source == "genai-prices", model
    assert found.cost(1_000_000, 1_000_000) > 0.5  # dollars per million, not zero


def test_list_prices_and_local_overrides() -> None:
    gpt41 = pricing({}, "openai", "gpt-4.1")
    assert gpt41 is not None and gpt41.cost(1_000_000, 0) == pytest.approx(2.0)
    assert gpt41.cost(0, 1_000_000) == pytest.approx(8.0)
    mine = pricing({"gpt-4.1": ModelPrice(input=1, output=1)}, "openai", "gpt-4.1")
    assert mine is not None and mine.source == "settings" and mine.cost(1_000_000, 0) == pytest.approx(1.0)
    # A local server is free unless a price is configured; an unknown hosted model has no price, and a
    # hosted OpenAI-compatible API (OpenRouter, Together, …) is not free.
    local = pricing({}, "openai-compatible", "qwen2.5:7b", "http://localhost:11434/v1")
    assert local is not None and local.free and local.cost(10**6, 10**6) == 0
    for url in ("http://127.0.0.1:8000/v1", "http://10.0.0.7:8000/v1", "http://ollama:11434/v1"):
        assert pricing({}, "openai-compatible", "qwen2.5:7b", url) is not None, url
    assert pricing({}, "openai-compatible", "qwen2.5:7b", "https://openrouter.ai/api/v1") is None
    paid_local = pricing({"qwen2.5:7b": ModelPrice(input=0.1, output=0.2)}, "openai-compatible", "qwen2.5:7b")
    assert paid_local is not None and not paid_local.free
    assert pricing({}, "openai", "gpt-mystery") is None
    assert pricing({}, "anthropic", "claude-mystery-9") is None


def test_prices_need_no_network() -> None:
    code = (
        "import socket\n"
        "def no(*a, **k): raise SystemExit('network used')\n"
        "socket.socket.connect = no\n"
        "from autarky.llm.prices import pricing\n"
        "print(pricing({}, 'anthropic', 'claude-opus-4-1').cost(10**6, 0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert float(out.stdout) == pytest.approx(15.0)


def test_price_table_and_database_are_imported_lazily() -> None:
    code = (
        "import sys, activities.models.llm, autarky.llm.prices, autarky.llm.settings;"
        "print(sorted(m for m in ('genai_prices', 'sqlalchemy', 'openai', 'anthropic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


async def test_an_unpriced_model_is_refused_before_any_call(openai_server: OpenAIServer) -> None:
    # Issue 26 item 4: gpt-4.1 used to cost $0 and pass every budget; any unknown model still would.
    error = await refused(openai_gateway(openai_server, openai_model="gpt-mystery"))
    assert error.type == "LlmUnpriced" and error.non_retryable
    assert "AUTARKY_LLM__PRICES__gpt-mystery__INPUT" in error.message
    assert "AUTARKY_LLM__PRICES__gpt-mystery__OUTPUT" in error.message
    assert openai_server.requests == []  # refused before the HTTP call

    priced = openai_gateway(
        openai_server, openai_model="gpt-mystery", prices={"gpt-mystery": ModelPrice(input=1, output=2)}
    )
    result = await priced.complete(request(), Answer)
    assert result.cost_usd == pytest.approx((result.tokens_in * 1 + result.tokens_out * 2) / 1e6)


async def test_gpt_41_costs_its_list_price(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(200, openai_completion('{"score": 0.5}', tokens_in=1000, tokens_out=100)))
    result = await openai_gateway(openai_server, openai_model="gpt-4.1").complete(request(), Answer)
    assert result.cost_usd == pytest.approx((1000 * 2.0 + 100 * 8.0) / 1e6)


# ------------------------------------------------------------------------------------- reasoning models


@pytest.mark.parametrize(
    ("model", "sent"),
    [("gpt-5-mini", True), ("o4-mini", True), ("o3", True), ("gpt-4.1", False), ("gpt-4o-mini", False)],
)
async def test_reasoning_effort_goes_to_reasoning_models_only(
    openai_server: OpenAIServer, model: str, sent: bool
) -> None:
    await openai_gateway(openai_server, openai_model=model).complete(request(), Answer)
    body = openai_server.requests[-1].body
    assert body.get("reasoning_effort") == ("low" if sent else None)
    assert body["max_completion_tokens"] == 300


async def test_reasoning_effort_is_a_setting_and_not_sent_to_local_servers(
    openai_server: OpenAIServer,
) -> None:
    await openai_gateway(openai_server, reasoning_effort="high").complete(request(), Answer)
    assert openai_server.requests[-1].body["reasoning_effort"] == "high"
    local = LlmSettings(provider="openai-compatible", compatible_base_url=openai_server.base_url)
    await LlmGateway(local, environ={}, ledger=None).complete(request(), Answer)
    assert "reasoning_effort" not in openai_server.requests[-1].body


async def test_an_answer_emptied_by_reasoning_is_a_configuration_error() -> None:
    # Issue 26 item 7: a reasoning model that thinks past the cap answers nothing, cut off at the limit.
    with OpenAIServer(reasoning_tokens=2000) as server:
        gateway = openai_gateway(server)
        error = await refused(gateway, request(max_tokens_setting="AUTARKY_LLM__ANALYSIS_MAX_TOKENS"))
        assert error.type == "LlmReasoningExhausted" and error.non_retryable
        assert "AUTARKY_LLM__ANALYSIS_MAX_TOKENS (300)" in error.message
        assert "AUTARKY_LLM__REASONING_EFFORT (low)" in error.message
        assert len(server.requests) == 1  # no repair: it would be cut off (and paid) the same way
        assert error.details[0]["tokens_out"] == 300
        [body] = [r.body for r in server.requests]
        usage_reply = server.billed[0]
        assert usage_reply[1] == 300

        # With room for the reasoning and the answer, the same server answers.
        result = await gateway.complete(request(max_tokens=4000), Answer)
        assert result.tokens_out > 2000 and body["max_completion_tokens"] == 300


def test_the_completion_caps_are_settings() -> None:
    settings = LlmSettings(analysis_max_tokens=6000, plan_max_tokens=12000, reasoning_effort="medium")
    assert (settings.analysis_max_tokens, settings.plan_max_tokens) == (6000, 12000)
    defaults = LlmSettings()
    assert defaults.analysis_max_tokens > 600 and defaults.plan_max_tokens > 1200  # room for reasoning
    assert defaults.reasoning_effort == "low"


# ------------------------------------------------------------------------------ request vs account errors


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "LlmBadRequest"),
        (413, "LlmBadRequest"),
        (422, "LlmBadRequest"),
        (401, "LlmRejected"),
        (403, "LlmRejected"),
    ],
)
async def test_a_bad_request_is_told_apart_from_a_refused_account(
    openai_server: OpenAIServer, status: int, kind: str
) -> None:
    openai_server.script(openai_error(status, "no"))
    error = await refused(openai_gateway(openai_server))
    assert error.type == kind and error.non_retryable


# --------------------------------------------------------------------------------- structured output


def _objects(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if schema.get("type") == "object":
        yield schema
    for value in schema.values():
        if isinstance(value, dict):
            yield from _objects(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from _objects(item)


async def test_openai_gets_a_strict_schema(openai_server: OpenAIServer) -> None:
    await openai_gateway(openai_server).complete(request(), Answer)
    sent = openai_server.requests[0].body["response_format"]["json_schema"]
    assert sent["strict"] is True and sent["name"] == "Answer"
    objects = list(_objects(sent["schema"]))
    assert len(objects) == 2  # Answer and Inner (in $defs)
    for obj in objects:  # strict: every property required, nothing else allowed
        assert obj["additionalProperties"] is False and set(obj["required"]) == set(obj["properties"])


def test_no_private_sdk_functions() -> None:
    # The SDKs' private modules (openai.lib._pydantic, anthropic._…) change without notice.
    for path in ("activities/models/providers.py", "activities/models/llm.py"):
        source = (ROOT / path).read_text()
        assert not re.search(r"(openai|anthropic)\.(lib\b|_)", source), path


async def test_anthropic_uses_native_structured_output() -> None:
    with AnthropicServer() as server:
        settings = LlmSettings(
            provider="anthropic", anthropic_base_url=server.url, request_timeout=timedelta(seconds=5)
        )
        gateway = LlmGateway(settings, environ={"ANTHROPIC_API_KEY": "sk-ant-test"}, ledger=None)
        server.script(anthropic_json('{"score": 7}'))  # out of range: repaired once, natively
        result = await gateway.complete(request(), Answer)

    assert result.repaired and 0 <= result.output.score <= 1
    first, second = (r.body for r in server.requests)
    assert "tools" not in first and "tool_choice" not in first
    output_format = first["output_config"]["format"]
    assert output_format["type"] == "json_schema"
    assert output_format["schema"]["additionalProperties"] is False
    assert second["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": '{"score": 7}'}],
    }
    assert second["messages"][2]["role"] == "user" and "score" in second["messages"][2]["content"]
    assert json.dumps(second["output_config"]) == json.dumps(first["output_config"])
