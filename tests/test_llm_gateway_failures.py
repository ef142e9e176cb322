"""The LLM gateway's failures, through the real SDKs against local servers speaking OpenAI's and Anthropic's
formats: which are retried (and after how long) and which are final, with messages that name what to fix."""

from __future__ import annotations

from datetime import timedelta

import pytest

from activities.models.llm import LlmGateway
from autarky.llm.settings import LlmSettings
from autarky.llm.types import ModelPrice
from tests import test_llm_gateway
from tests.llm_servers import (
    AnthropicServer,
    OpenAIServer,
    Reply,
    anthropic_error,
    anthropic_message,
    openai_completion,
    openai_error,
)
from tests.test_llm_gateway import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    anthropic_gateway,
    compatible_gateway,
    failure,
    no_secret,
    openai_gateway,
)

openai_server = test_llm_gateway.openai_server
anthropic_server = test_llm_gateway.anthropic_server


# ---------------------------------------------------------------------------------- failures: retried


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"retry-after": "7"}, timedelta(seconds=7)),
        (
            {"retry-after-ms": "1500", "retry-after": "2"},
            timedelta(milliseconds=1500),
        ),  # OpenAI's precise one
        ({}, None),  # no header: the retry policy's backoff
    ],
)
async def test_openai_429_is_retryable_after_retry_after(
    openai_server: OpenAIServer, headers: dict[str, str], delay: timedelta | None
) -> None:
    openai_server.script(
        openai_error(
            429,
            "Rate limit reached for gpt-5-mini.",
            type="requests",
            code="rate_limit_exceeded",
            headers=headers,
        )
    )
    error = await failure(openai_gateway(openai_server))
    assert error.type == "LlmRateLimited" and not error.non_retryable
    assert error.next_retry_delay == delay
    assert "HTTP 429" in error.message and "Rate limit reached" in error.message
    assert len(openai_server.requests) == 1  # max_retries=0: Temporal retries, the SDK does not


async def test_anthropic_429_is_retryable_after_retry_after(anthropic_server: AnthropicServer) -> None:
    anthropic_server.script(
        anthropic_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your limit.",
            {"retry-after": "12"},
        )
    )
    error = await failure(anthropic_gateway(anthropic_server))
    assert error.type == "LlmRateLimited" and not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=12)
    assert len(anthropic_server.requests) == 1


async def test_openai_insufficient_quota_is_final(openai_server: OpenAIServer) -> None:
    openai_server.script(
        openai_error(
            429, "You exceeded your current quota.", type="insufficient_quota", code="insufficient_quota"
        )
    )
    error = await failure(openai_gateway(openai_server))
    assert error.type == "LlmRejected" and error.non_retryable
    assert "billing" in error.message and "OPENAI_API_KEY" in error.message


async def test_5xx_and_overloaded_are_retryable(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    openai_server.script(
        openai_error(500, "The server had an error while processing your request.", type="server_error")
    )
    error = await failure(openai_gateway(openai_server))
    assert error.type == "LlmUnavailable" and not error.non_retryable and error.next_retry_delay is None
    assert "HTTP 500" in error.message

    anthropic_server.script(anthropic_error(529, "overloaded_error", "Overloaded"))
    error = await failure(anthropic_gateway(anthropic_server))
    assert error.type == "LlmUnavailable" and not error.non_retryable
    assert "HTTP 529: Overloaded" in error.message
    assert len(anthropic_server.requests) == 1

    anthropic_server.script(Reply(503, "<html>Service Unavailable</html>", {"retry-after": "3"}))
    error = await failure(anthropic_gateway(anthropic_server))
    assert error.type == "LlmUnavailable" and error.next_retry_delay == timedelta(seconds=3)


async def test_unreachable_and_timeout_are_retryable() -> None:
    with OpenAIServer() as closed:
        url = closed.base_url
    settings = LlmSettings(provider="openai", openai_base_url=url, request_timeout=timedelta(seconds=2))
    error = await failure(LlmGateway(settings, environ={"OPENAI_API_KEY": OPENAI_KEY}, ledger=None))
    assert error.type == "LlmUnavailable" and not error.non_retryable
    assert "could not be reached" in error.message

    with AnthropicServer(latency=1.0) as slow:
        settings = LlmSettings(
            provider="anthropic", anthropic_base_url=slow.url, request_timeout=timedelta(seconds=0.2)
        )
        error = await failure(LlmGateway(settings, environ={"ANTHROPIC_API_KEY": ANTHROPIC_KEY}, ledger=None))
    assert error.type == "LlmUnavailable" and not error.non_retryable
    assert "timed out after 0.2 s" in error.message


# ------------------------------------------------------------------------------------ failures: final


async def test_401_names_the_key_variable_without_the_key(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
) -> None:
    # OpenAI quotes the key it was given; the message must not carry it on.
    openai_server.script(
        openai_error(
            401,
            f"Incorrect API key provided: {OPENAI_KEY}. You can find your API key at ...",
            code="invalid_api_key",
        )
    )
    error = await failure(openai_gateway(openai_server))
    assert error.type == "LlmRejected" and error.non_retryable
    assert "HTTP 401" in error.message and "check OPENAI_API_KEY" in error.message
    assert "Incorrect API key provided" in error.message
    no_secret(error)

    anthropic_server.script(
        anthropic_error(401, "authentication_error", f"invalid x-api-key {ANTHROPIC_KEY}")
    )
    error = await failure(anthropic_gateway(anthropic_server))
    assert error.non_retryable and "check ANTHROPIC_API_KEY" in error.message
    no_secret(error)


async def test_404_names_the_model_and_base_url(openai_server: OpenAIServer) -> None:
    openai_server.script(
        openai_error(
            404,
            "The model `gpt-nope` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    )
    priced = {"gpt-nope": ModelPrice(input=1, output=1)}  # an unpriced model would not be asked at all
    error = await failure(openai_gateway(openai_server, openai_model="gpt-nope", prices=priced))
    assert error.type == "LlmRejected" and error.non_retryable
    assert f"model gpt-nope not found at {openai_server.base_url}" in error.message
    assert "AUTARKY_LLM__OPENAI_MODEL" in error.message
    no_secret(error)

    openai_server.script(openai_error(404, "model 'qwen2.5:7b' not found", type="api_error"))
    error = await failure(compatible_gateway(openai_server))
    assert "ollama pull qwen2.5:7b" in error.message and error.non_retryable


async def test_400_and_403_are_final(openai_server: OpenAIServer, anthropic_server: AnthropicServer) -> None:
    openai_server.script(
        openai_error(400, "Invalid schema for response_format 'Verdict'.", code="invalid_json_schema")
    )
    error = await failure(openai_gateway(openai_server))
    assert error.type == "LlmBadRequest" and error.non_retryable  # this request, not the account
    assert "Invalid schema for response_format" in error.message and "request was rejected" in error.message
    assert len(openai_server.requests) == 1

    anthropic_server.script(
        anthropic_error(403, "permission_error", "Your API key does not have permission.")
    )
    error = await failure(anthropic_gateway(anthropic_server))
    assert error.non_retryable and "may use model claude-haiku-4-5" in error.message
    no_secret(error)


async def test_refusals_are_final(openai_server: OpenAIServer, anthropic_server: AnthropicServer) -> None:
    openai_server.script(Reply(200, openai_completion(None, refusal="I can't help with that.")))
    error = await failure(openai_gateway(openai_server))
    assert error.type == "LlmRefused" and error.non_retryable
    assert "I can't help with that." in error.message and len(openai_server.requests) == 1
    assert error.details[0]["tokens_in"] == 10  # the refused call still cost tokens

    text = {"type": "text", "text": "I won't do that."}
    anthropic_server.script(Reply(200, anthropic_message([text], stop_reason="refusal")))
    error = await failure(anthropic_gateway(anthropic_server))
    assert error.type == "LlmRefused" and error.non_retryable and "I won't do that." in error.message


async def test_not_configured_is_final() -> None:
    offline = LlmGateway(LlmSettings(), environ={}, ledger=None)
    assert offline.offline
    error = await failure(offline)
    assert error.type == "LlmNotConfigured" and error.non_retryable and "OPENAI_API_KEY" in error.message

    keyless = LlmGateway(LlmSettings(provider="anthropic"), environ={"ANTHROPIC_API_KEY": " "}, ledger=None)
    error = await failure(keyless)
    assert error.type == "LlmNotConfigured" and "set ANTHROPIC_API_KEY" in error.message
