"""The LLM gateway, through the real SDKs, against local servers speaking OpenAI's and Anthropic's formats."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError
from structlog.testing import capture_logs
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.models.llm import LlmGateway, retry_after
from autarky.core.logging import redact
from autarky.llm.settings import LlmSettings, resolve_provider
from autarky.llm.types import (
    LlmRequest,
    LlmResult,
    ModelPrice,
    ProviderChoice,
    cost_of,
)
from tests.llm_servers import (
    AnthropicServer,
    OpenAIServer,
    Reply,
    anthropic_json,
    openai_completion,
    openai_error,
    tool_use,
)

OPENAI_KEY = "sk-test-openai-0123456789abcdefSECRET"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdefSECRET"
LOCAL_KEY = "local-key-0123456789SECRET"
PROMPT = "Is the paper 'Agents at scale' relevant to autoscaling? CONFIDENTIAL-PROMPT-TEXT"


class Verdict(BaseModel):
    relevant: bool
    score: int = Field(ge=0, le=10)
    reasons: list[str] = Field(min_length=1)
    kind: Literal["paper", "repository"]


VALID = {"relevant": True, "score": 7, "reasons": ["mentions autoscaling"], "kind": "paper"}


def request(**extra: Any) -> LlmRequest:
    return LlmRequest(system="You triage research.", prompt=PROMPT, max_tokens=300, purpose="triage", **extra)


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicServer]:
    with AnthropicServer() as server:
        yield server


def openai_gateway(server: OpenAIServer, **extra: Any) -> LlmGateway:
    extra.setdefault("request_timeout", timedelta(seconds=5))
    settings = LlmSettings(provider="openai", openai_base_url=server.base_url, **extra)
    return LlmGateway(settings, environ={"OPENAI_API_KEY": OPENAI_KEY}, ledger=None)  # unmetered


def anthropic_gateway(server: AnthropicServer, **extra: Any) -> LlmGateway:
    settings = LlmSettings(
        provider="anthropic", anthropic_base_url=server.url, request_timeout=timedelta(seconds=5), **extra
    )
    return LlmGateway(settings, environ={"ANTHROPIC_API_KEY": ANTHROPIC_KEY}, ledger=None)


def compatible_gateway(
    server: OpenAIServer, environ: dict[str, str] | None = None, **extra: Any
) -> LlmGateway:
    settings = LlmSettings(
        provider="openai-compatible",
        compatible_base_url=server.base_url,
        compatible_model="qwen2.5:7b",
        request_timeout=timedelta(seconds=5),
        **extra,
    )
    return LlmGateway(settings, environ=environ or {}, ledger=None)


async def failure(gateway: LlmGateway, req: LlmRequest | None = None) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await gateway.complete(req or request(), Verdict)
    return caught.value


def no_secret(error: ApplicationError) -> None:
    for key in (OPENAI_KEY, ANTHROPIC_KEY, LOCAL_KEY, "0123456789abcdef"):
        assert key not in error.message
        assert key not in str(error.details)


# ----------------------------------------------------------------------------------- structured output


async def test_openai_structured_output(openai_server: OpenAIServer) -> None:
    gateway = openai_gateway(openai_server)
    result = await gateway.complete(request(), Verdict)

    assert isinstance(result.output, Verdict) and result.output.kind == "paper"
    assert result.provider == "openai" and result.model == "gpt-5-mini" and not result.repaired
    [sent] = openai_server.requests
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    body = sent.body
    assert body["model"] == "gpt-5-mini" and body["max_completion_tokens"] == 300
    assert "max_tokens" not in body and "temperature" not in body  # gpt-5 refuses a temperature
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(Verdict.model_fields)
    assert body["messages"][0] == {"role": "system", "content": "You triage research."}
    assert body["messages"][1] == {"role": "user", "content": PROMPT}


async def test_anthropic_structured_output_is_a_forced_tool(anthropic_server: AnthropicServer) -> None:
    gateway = anthropic_gateway(anthropic_server, anthropic_output="tool")  # for models before json_schema
    result = await gateway.complete(request(temperature=0.2), Verdict)

    assert isinstance(result.output, Verdict) and result.output.score == 1
    assert result.provider == "anthropic" and result.model == "claude-haiku-4-5"
    [sent] = anthropic_server.requests
    assert sent.path == "/v1/messages"
    # anthropic 2.x sends the key as a bearer token (older SDKs used x-api-key; the API takes both).
    auth = sent.headers.get("x-api-key") or sent.headers.get("authorization", "").removeprefix("Bearer ")
    assert auth == ANTHROPIC_KEY and "anthropic-version" in sent.headers
    body = sent.body
    assert body["tools"] == [
        {
            "name": "Verdict",
            "description": "Record the answer. Its input is the answer, as Verdict.",
            "input_schema": Verdict.model_json_schema(),
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "Verdict", "disable_parallel_tool_use": True}
    assert body["system"] == "You triage research." and body["max_tokens"] == 300
    assert body["messages"] == [{"role": "user", "content": PROMPT}]
    assert "temperature" not in body  # the anthropic SDK 2.x has no sampling parameters


async def test_openai_compatible_uses_json_object_and_never_sends_the_openai_key(
    openai_server: OpenAIServer,
) -> None:
    # OPENAI_API_KEY is set, yet a local server must not receive it.
    gateway = compatible_gateway(openai_server, environ={"OPENAI_API_KEY": OPENAI_KEY})
    openai_server.script(Reply(200, openai_completion("```json\n" + json.dumps(VALID) + "\n```")))
    result = await gateway.complete(request(temperature=0.0), Verdict)

    assert result.output == Verdict(**VALID) and result.provider == "openai-compatible"
    assert result.model == "qwen2.5:7b" and not result.repaired  # a Markdown fence is no error
    [sent] = openai_server.requests
    assert OPENAI_KEY not in json.dumps(sent.headers)
    assert sent.headers["authorization"] == "Bearer no-key"
    body = sent.body
    assert body["response_format"] == {"type": "json_object"}
    assert body["max_tokens"] == 300 and body["temperature"] == 0.0
    system = body["messages"][0]["content"]
    assert system.startswith("You triage research.") and "JSON schema: " in system and '"score"' in system


async def test_openai_compatible_key_and_json_schema_by_setting(openai_server: OpenAIServer) -> None:
    gateway = compatible_gateway(
        openai_server,
        environ={"LOCAL_LLM_KEY": LOCAL_KEY},
        compatible_api_key_env="LOCAL_LLM_KEY",
        compatible_response_format="json_schema",
    )
    result = await gateway.complete(request(), Verdict)  # the default responder follows the schema

    assert result.output.reasons == ["example"]
    [sent] = openai_server.requests
    assert sent.headers["authorization"] == f"Bearer {LOCAL_KEY}"
    assert sent.body["response_format"]["type"] == "json_schema"


async def test_client_made_once_without_sdk_retries_and_calls_run_concurrently() -> None:
    with OpenAIServer(latency=0.5) as server:
        gateway = openai_gateway(server, request_timeout=timedelta(seconds=7))
        results = await asyncio.gather(*(gateway.complete(request(), Verdict) for _ in range(6)))

    assert len(results) == 6 and len(server.requests) == 6
    # Concurrent, not one after the other: each reply waits 0.5 s, so overlapping calls meet at the server.
    assert server.max_in_flight >= 2, server.max_in_flight
    provider = gateway._provider
    assert provider is not None and provider.client.max_retries == 0 and provider.client.timeout == 7.0
    await gateway.complete(request(), Verdict)
    assert gateway._provider is provider


# ------------------------------------------------------------------------------------ tokens and cost


def test_cost_of_from_the_price_table() -> None:
    prices = {"m": ModelPrice(input=2.0, output=8.0)}
    assert cost_of(prices, "m", 1_000_000, 500_000) == pytest.approx(6.0)
    assert cost_of(prices, "m-2025-08-07", 1000, 0) == pytest.approx(0.002)  # a dated snapshot
    assert cost_of(prices, "m-20251001", 0, 1000) == pytest.approx(0.008)
    assert cost_of(prices, "unknown", 10**6, 10**6) == 0.0


async def test_tokens_and_cost_from_usage(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    openai_server.script(Reply(200, openai_completion(json.dumps(VALID), tokens_in=1200, tokens_out=300)))
    result = await openai_gateway(openai_server).complete(request(), Verdict)
    assert (result.tokens_in, result.tokens_out) == (1200, 300)
    assert result.cost_usd == pytest.approx((1200 * 0.25 + 300 * 2.00) / 1e6)

    anthropic_server.script(anthropic_json(VALID, tokens_in=2000, tokens_out=100))
    prices = {"claude-haiku-4-5": ModelPrice(input=3.0, output=15.0)}  # overrides the default price
    result = await anthropic_gateway(anthropic_server, prices=prices).complete(request(), Verdict)
    assert (result.tokens_in, result.tokens_out) == (2000, 100)
    assert result.cost_usd == pytest.approx((2000 * 3.0 + 100 * 15.0) / 1e6)


async def test_logs_carry_usage_but_not_the_prompt_nor_the_key(openai_server: OpenAIServer) -> None:
    openai_server.script(openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}."))
    gateway = openai_gateway(openai_server)
    with capture_logs() as logs:
        await failure(gateway)
        await gateway.complete(request(), Verdict)
    [answered] = [e for e in logs if e["event"] == "llm answered"]
    assert answered["provider"] == "openai" and answered["model"] == "gpt-5-mini"
    assert answered["purpose"] == "triage" and answered["tok_in"] > 0 and answered["tok_out"] > 0
    assert answered["cost_usd"] > 0 and answered["latency_ms"] >= 0 and answered["repaired"] is False
    assert redact(answered) == answered  # the project's log redaction leaves the usage readable
    [failed] = [e for e in logs if e["event"] == "llm call failed"]
    assert failed["type"] == "LlmRejected" and failed["retryable"] is False and "HTTP 401" in failed["error"]
    text = repr(logs)
    assert (
        "CONFIDENTIAL-PROMPT-TEXT" not in text and OPENAI_KEY not in text and "0123456789abcdef" not in text
    )


# ------------------------------------------------------------------------------------- repair, once


async def test_invalid_json_is_repaired_once(openai_server: OpenAIServer) -> None:
    openai_server.script(Reply(200, openai_completion('{"relevant": tru', tokens_in=100, tokens_out=20)))
    result = await openai_gateway(openai_server).complete(request(), Verdict)

    assert result.repaired and isinstance(result.output, Verdict)
    assert len(openai_server.requests) == 2
    second = openai_server.requests[1].body["messages"]
    assert second[:2] == openai_server.requests[0].body["messages"]
    assert second[2] == {"role": "assistant", "content": '{"relevant": tru'}
    assert second[3]["role"] == "user" and "Invalid JSON" in second[3]["content"]
    assert result.tokens_in > 100 and result.tokens_out > 20  # both calls count


async def test_anthropic_invalid_tool_input_is_repaired_with_a_tool_result(
    anthropic_server: AnthropicServer,
) -> None:
    anthropic_server.script(
        tool_use({"relevant": True, "score": 42, "kind": "paper"}, tokens_in=50, tokens_out=9)
    )
    result = await anthropic_gateway(anthropic_server, anthropic_output="tool").complete(request(), Verdict)

    assert result.repaired and result.output.score == 1
    second = anthropic_server.requests[1].body["messages"]
    assert second[1]["role"] == "assistant" and second[1]["content"][0]["type"] == "tool_use"
    [tool_result] = second[2]["content"]
    assert tool_result["type"] == "tool_result" and tool_result["is_error"] is True
    assert tool_result["tool_use_id"] == second[1]["content"][0]["id"]
    assert "score: Input should be less than or equal to 10" in tool_result["content"]
    assert "reasons: Field required" in tool_result["content"]
    assert result.tokens_in > 50 and result.tokens_out > 9


async def test_invalid_twice_is_final_and_names_the_error(openai_server: OpenAIServer) -> None:
    bad = json.dumps({**VALID, "kind": "blog"})
    openai_server.script(
        Reply(200, openai_completion("not json at all", tokens_in=100, tokens_out=10)),
        Reply(200, openai_completion(bad, tokens_in=150, tokens_out=12)),
    )
    error = await failure(openai_gateway(openai_server))
    assert error.type == "LlmInvalidOutput" and error.non_retryable
    assert "kind: Input should be 'paper' or 'repository'" in error.message
    assert "Verdict" in error.message and "triage" in error.message
    assert len(openai_server.requests) == 2
    assert error.details[0]["tokens_in"] == 250 and error.details[0]["tokens_out"] == 22
    assert error.details[0]["cost_usd"] == pytest.approx((250 * 0.25 + 22 * 2.0) / 1e6)


async def test_truncated_output_is_repaired_then_final(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    cut = Reply(200, openai_completion('{"relevant": true, "score": 7, "reas', finish_reason="length"))
    openai_server.script(cut, cut)
    error = await failure(openai_gateway(openai_server))
    assert error.type == "LlmInvalidOutput" and error.non_retryable
    assert "cut off at max_tokens (300)" in error.message and "raise max_tokens (300)" in error.message
    assert "shorter" in openai_server.requests[1].body["messages"][-1]["content"]

    anthropic_server.script(anthropic_json('{"relevant": tr', stop_reason="max_tokens"))
    result = await anthropic_gateway(anthropic_server).complete(request(), Verdict)
    assert result.repaired  # the second, default answer was whole


# ---------------------------------------------------------------------------------- choice, settings


@pytest.mark.parametrize(
    ("environ", "settings", "expected"),
    [
        ({"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}, {}, ("openai", "gpt-5-mini", "OPENAI_API_KEY")),
        ({"ANTHROPIC_API_KEY": "k"}, {}, ("anthropic", "claude-haiku-4-5", "ANTHROPIC_API_KEY")),
        (
            {"OPENAI_API_KEY": ""},
            {"compatible_base_url": "http://localhost:11434/v1"},
            ("openai-compatible", "llama3.1:8b", None),
        ),
        ({}, {}, None),
        ({"OPENAI_API_KEY": "k"}, {"provider": "offline"}, None),
        (
            {},
            {"provider": "anthropic", "anthropic_model": "claude-opus-4-8"},
            ("anthropic", "claude-opus-4-8", "ANTHROPIC_API_KEY"),
        ),
    ],
)
def test_resolve_provider(environ: dict[str, str], settings: dict[str, Any], expected: tuple | None) -> None:
    choice = resolve_provider(LlmSettings(**settings), environ)
    if expected is None:
        assert choice is None
    else:
        assert choice is not None and (choice.kind, choice.model, choice.key_env) == expected


def test_provider_choice_base_urls_are_explicit() -> None:
    choice = resolve_provider(LlmSettings(), {"OPENAI_API_KEY": "k"})
    assert choice == ProviderChoice(
        kind="openai", model="gpt-5-mini", base_url="https://api.openai.com/v1", key_env="OPENAI_API_KEY"
    )
    local = resolve_provider(
        LlmSettings(
            provider="openai-compatible",
            compatible_base_url="http://gpu:8000/v1/",
            compatible_api_key_env="VLLM_KEY",
        ),
        {},
    )
    assert local is not None and local.base_url == "http://gpu:8000/v1" and local.key_env == "VLLM_KEY"


def test_settings_validate_and_merge_prices() -> None:
    settings = LlmSettings(prices={"mine": {"input": 1, "output": 2}})
    assert settings.prices == {"mine": ModelPrice(input=1, output=2)}  # local; the table is genai-prices
    assert settings.budget_per_cycle_usd == 0.50 and settings.budget_per_day_usd == 5.00
    assert LlmSettings(request_timeout="90s").request_timeout == timedelta(seconds=90)
    with pytest.raises(ValidationError, match="needs compatible_base_url"):
        LlmSettings(provider="openai-compatible")
    with pytest.raises(ValidationError, match="not an http"):
        LlmSettings(compatible_base_url="localhost:11434")
    with pytest.raises(ValidationError):
        LlmSettings(prices={"m": {"input": -1, "output": 0}})


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after({"retry-after": "2.5"}) == timedelta(seconds=2.5)
    assert retry_after({"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, now) == timedelta(seconds=30)
    assert retry_after({"retry-after-ms": "250"}) == timedelta(milliseconds=250)
    assert retry_after({"retry-after": "soon"}) is None and retry_after({"retry-after": "0"}) is None
    assert retry_after({"retry-after": "86400"}) == timedelta(hours=1)


def test_sdks_are_imported_only_when_called() -> None:
    code = (
        "import sys, activities.models.llm, autarky.llm.types;"
        "print(sorted(m for m in ('openai', 'anthropic', 'httpx2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ---------------------------------------------------------------------------- under a real Temporal worker


class LlmTestActivities:
    def __init__(self, gateway: LlmGateway) -> None:
        self.gateway = gateway

    @activity.defn(name="llm_test_triage")
    async def triage(self, prompt: str) -> LlmResult[Verdict]:
        return await self.gateway.complete(LlmRequest(prompt=prompt, purpose="triage"), Verdict)


@workflow.defn(name="LlmTriageTestWorkflow", sandboxed=False)
class TriageWorkflow:
    @workflow.run
    async def run(self, prompt: str) -> LlmResult[Verdict]:
        return await workflow.execute_activity(
            "llm_test_triage",
            prompt,
            result_type=LlmResult[Verdict],
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3),
        )


async def test_temporal_retries_a_rate_limited_call_after_retry_after(
    client: Client, openai_server: OpenAIServer
) -> None:
    openai_server.script(
        openai_error(
            429,
            "Rate limit reached.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after-ms": "400"},
        )
    )
    activities = LlmTestActivities(openai_gateway(openai_server))
    task_queue = f"llm-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[TriageWorkflow], activities=[activities.triage]
    ):
        started = time.monotonic()
        handle = await client.start_workflow(
            TriageWorkflow.run,
            PROMPT,
            id=f"llm-triage-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
        result = await handle.result()
        elapsed = time.monotonic() - started

    assert isinstance(result, LlmResult) and isinstance(result.output, Verdict)
    assert result.provider == "openai" and result.tokens_in > 0
    assert len(openai_server.requests) == 2  # one per attempt: the SDK itself retried nothing
    assert elapsed >= 0.4  # Retry-After's 400 ms, not the policy's 50 ms
    history = await handle.fetch_history()
    [started_event] = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    attributes = started_event.activity_task_started_event_attributes
    assert attributes.attempt == 2
    last = attributes.last_failure.application_failure_info
    assert last.type == "LlmRateLimited" and not last.non_retryable
    assert last.next_retry_delay.ToTimedelta() == timedelta(milliseconds=400)
