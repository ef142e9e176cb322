"""The provider adapters behind the LLM gateway: OpenAI (and OpenAI-compatible servers) and Anthropic.

Each adapter turns a request and an output model into one SDK call with that SDK's structured output (OpenAI:
a strict JSON-schema `response_format`; Anthropic: the Messages API's `output_config.format`, or a forced tool
whose input is the answer for older models) and the reply into a neutral `Answer`. SDK failures become
`HttpFailure` / `Unreachable`, which the gateway (activities.models.llm) classifies. The SDKs are imported
here, inside the adapters' constructors: they cost tens of MiB, and a worker that never asks an LLM must not
pay for them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from autarky.core.redaction import redact_text
from autarky.llm.types import LlmRequest, ProviderChoice

MAX_PROVIDER_MESSAGE = 300  # characters of a provider's error message kept in ours
# Sent as the bearer token to an OpenAI-compatible server that wants no key. Left None, the openai SDK
# would read OPENAI_API_KEY from the process environment and hand the OpenAI key to a local server.
NO_KEY = "no-key"
SCHEMA_LINE = "JSON schema: "  # how the system prompt carries the schema in json_object mode


@dataclass
class Answer:
    """One reply, provider-neutral. Exactly one of `text` (JSON text) and `data` (a tool's input) is set,
    unless the model answered nothing usable."""

    text: str | None = None
    data: Any = None
    refusal: str | None = None
    truncated: bool = False  # stopped by max_tokens
    stop: str | None = None  # finish_reason / stop_reason as the provider said it
    tokens_in: int = 0
    tokens_out: int = 0
    reasoning_tokens: int = 0  # of tokens_out, spent reasoning before the answer (OpenAI reports them)
    model: str | None = None  # as the provider reported it (e.g. a dated snapshot)
    # The assistant turn as this provider wants it back when it is asked to repair the answer.
    replay: list[dict[str, Any]] = field(default_factory=list)


class HttpFailure(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, headers: dict[str, str], message: str | None, code: str | None):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers  # lower-case names
        self.message = message  # the provider's own explanation, redacted and bounded
        self.code = code  # e.g. OpenAI's "insufficient_quota", Anthropic's "overloaded_error"


class Unreachable(Exception):
    """No answer: connection refused or reset, DNS, TLS, or the request timed out. `maybe_billed`: the
    request may have reached the provider (a timeout, a connection lost mid-way), so it may be paid for;
    False only when no connection was ever made."""

    def __init__(self, detail: str, *, timeout: bool, maybe_billed: bool = True):
        super().__init__(detail)
        self.detail = detail
        self.timeout = timeout
        self.maybe_billed = maybe_billed


# Per message and per request (the role framing, Anthropic's tool or output-format system prompt): what a
# provider adds to the text we send, in tokens, bounded generously.
_OVERHEAD_TOKENS = 1024


def input_bound(request: LlmRequest, output: type[BaseModel], repair: tuple[Answer, str] | None) -> int:
    """An upper bound of a call's input tokens: every token of a byte-level BPE tokenizer is at least one
    byte, so the UTF-8 size of all we send (system, prompt, schema, the repair turn) plus the framing."""
    parts = [request.system, request.prompt, json.dumps(schema_of(output))]
    if repair is not None:
        previous, note = repair
        parts += [json.dumps(previous.replay), note]
    return sum(len(part.encode()) for part in parts) + _OVERHEAD_TOKENS


def is_reasoning_model(model: str) -> bool:
    """OpenAI's reasoning models, which take `reasoning_effort`: gpt-5… (not the gpt-5-chat ones) and the
    o-series from o1 on (not o1-mini / o1-preview, which predate the parameter)."""
    name = model.lower()
    if "chat" in name:
        return False
    if name.startswith("gpt-5"):
        return True
    return re.match(r"o\d", name) is not None and not name.startswith(("o1-mini", "o1-preview"))


def _connect_failed(cause: BaseException) -> bool:
    """Whether the connection was never made (so nothing was sent): refused, DNS, TLS handshake."""
    return type(cause).__name__ in ("ConnectError", "ConnectTimeout")


def schema_of(output: type[BaseModel]) -> dict[str, Any]:
    return output.model_json_schema()


def strict_schema(output: type[BaseModel]) -> dict[str, Any]:
    """OpenAI's strict JSON schema of `output` (every property required, no additional ones), through the
    SDK's public `pydantic_function_tool`: the SDK keeps it in step with what the API accepts."""
    import openai

    return openai.pydantic_function_tool(output)["function"]["parameters"]


def tool_name(output: type[BaseModel]) -> str:
    """The forced tool's name: the model's class name, as tool names must be (letters, digits, _ and -)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", output.__name__)[:64]
    return name or "answer"


def _provider_message(body: object, secrets: set[str]) -> str | None:
    """The human part of an error body: OpenAI's error.message, Anthropic's error.message, or a text body."""
    message: Any = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
    elif isinstance(body, str):
        message = body
    if not message:
        return None
    # OpenAI's 401 quotes part of the key it was given ("Incorrect API key provided: sk-abc***xyz").
    text = " ".join(redact_text(str(message), secrets).split())
    return text if len(text) <= MAX_PROVIDER_MESSAGE else text[: MAX_PROVIDER_MESSAGE - 1] + "…"


def _code(body: object) -> str | None:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            code = inner.get("code") or inner.get("type")
            return str(code) if code else None
    return None


def _headers(response: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items()} if response is not None else {}


# ------------------------------------------------------------------------------------------------ OpenAI


class OpenAIProvider:
    """Chat Completions, for OpenAI itself and for OpenAI-compatible servers (Ollama, vLLM, llama.cpp).

    OpenAI gets a strict JSON-schema `response_format` (the strict schema of the SDK's public
    `pydantic_function_tool`, the one `parse` sends): its decoder then cannot produce anything but the schema.
    Reasoning models get `reasoning_effort` (settings.reasoning_effort). A compatible server gets
    `json_object` by default (settings.compatible_response_format) with the schema in the system prompt:
    `json_object` is understood nearly everywhere, while `json_schema` support varies by server and version
    (older Ollama and llama.cpp ignore or reject it), and the gateway validates and repairs the answer either
    way. We call `create` rather than `parse`: `parse` raises on a bad answer and so loses the answer and its
    token counts, both of which the repair and the budget need."""

    def __init__(
        self,
        choice: ProviderChoice,
        api_key: str | None,
        timeout: float,
        response_format: str,
        reasoning_effort: str | None = None,
    ):
        import openai

        self.openai = openai
        self.choice = choice
        self.compatible = choice.kind == "openai-compatible"
        self.response_format = response_format if self.compatible else "json_schema"
        self.reasoning_effort = (
            reasoning_effort if not self.compatible and is_reasoning_model(choice.model) else None
        )
        self.secrets = {api_key} if api_key else set()
        self.client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY,
            base_url=choice.base_url,
            timeout=timeout,
            max_retries=0,  # Temporal retries, with its backoff, and sees every failure
        )

    def _format(self, output: type[BaseModel]) -> dict[str, Any]:
        if self.response_format == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {
                "name": tool_name(output),
                "schema": strict_schema(output),
                "strict": True,
            },
        }

    def _system(self, request: LlmRequest, output: type[BaseModel]) -> str:
        if self.response_format == "json_schema":
            return request.system
        schema = json.dumps(schema_of(output), separators=(",", ":"))
        # json_object mode only promises JSON; the schema has to be in the prompt.
        instruction = (
            f"Answer with one JSON object only, valid against this JSON schema.\n{SCHEMA_LINE}{schema}"
        )
        return f"{request.system}\n\n{instruction}" if request.system else instruction

    async def ask(
        self, request: LlmRequest, output: type[BaseModel], repair: tuple[Answer, str] | None
    ) -> Answer:
        messages: list[dict[str, Any]] = []
        system = self._system(request, output)
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": request.prompt})
        if repair is not None:
            previous, note = repair
            messages += [*previous.replay, {"role": "user", "content": note}]
        options: dict[str, Any] = {}
        # OpenAI's reasoning models take only max_completion_tokens; compatible servers know max_tokens.
        options["max_tokens" if self.compatible else "max_completion_tokens"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if self.reasoning_effort is not None:
            options["reasoning_effort"] = self.reasoning_effort
        openai = self.openai
        try:
            completion = await self.client.chat.completions.create(
                model=self.choice.model, messages=messages, response_format=self._format(output), **options
            )
        except openai.APITimeoutError as error:
            raise Unreachable("the request timed out", timeout=True) from error
        except openai.APIConnectionError as error:
            cause = error.__cause__ or error
            raise Unreachable(
                f"{type(cause).__name__}: {cause}", timeout=False, maybe_billed=not _connect_failed(cause)
            ) from error
        except openai.APIStatusError as error:
            raise HttpFailure(
                error.status_code,
                _headers(error.response),
                _provider_message(error.body, self.secrets),
                error.code or _code(error.body),
            ) from error
        except openai.APIResponseValidationError as error:  # 200 with something that is not the API
            raise HttpFailure(
                502, _headers(error.response), "the reply was not a chat completion", None
            ) from error
        return self._answer(completion)

    @staticmethod
    def _answer(completion: Any) -> Answer:
        usage = getattr(completion, "usage", None)
        details = getattr(usage, "completion_tokens_details", None) if usage else None
        answer = Answer(
            tokens_in=(usage.prompt_tokens or 0) if usage else 0,
            tokens_out=(usage.completion_tokens or 0) if usage else 0,
            reasoning_tokens=(getattr(details, "reasoning_tokens", None) or 0) if details else 0,
            model=getattr(completion, "model", None),
        )
        if not completion.choices:
            return answer
        choice = completion.choices[0]
        message = choice.message
        answer.stop = choice.finish_reason
        answer.truncated = choice.finish_reason == "length"
        answer.text = message.content
        answer.refusal = getattr(message, "refusal", None)
        if choice.finish_reason == "content_filter" and answer.refusal is None:
            answer.refusal = "the provider's content filter stopped the answer"
        answer.replay = [{"role": "assistant", "content": message.content or ""}]
        return answer


# --------------------------------------------------------------------------------------------- Anthropic


class AnthropicProvider:
    """Messages API. `json_schema` (the default): the native structured output, `output_config.format`
    with the SDK's public `transform_schema` (constraints the API cannot enforce move into descriptions;
    the gateway validates them): the answer is one text block of JSON. `tool`: one tool whose input
    schema is the output model, forced by `tool_choice`, for models older than structured outputs: the
    answer is the tool call's input, already parsed JSON."""

    def __init__(self, choice: ProviderChoice, api_key: str, timeout: float, output: str = "json_schema"):
        import anthropic

        self.anthropic = anthropic
        self.choice = choice
        self.native = output == "json_schema"
        self.secrets = {api_key}
        # The key is passed explicitly, so the SDK consults no environment variable nor profile on disk.
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=choice.base_url, timeout=timeout, max_retries=0
        )

    async def ask(
        self, request: LlmRequest, output: type[BaseModel], repair: tuple[Answer, str] | None
    ) -> Answer:
        name = tool_name(output)
        messages: list[dict[str, Any]] = [{"role": "user", "content": request.prompt}]
        if repair is not None:
            previous, note = repair
            messages.append(
                {"role": "assistant", "content": previous.replay or [{"type": "text", "text": "-"}]}
            )
            calls = [block["id"] for block in previous.replay if block["type"] == "tool_use"]
            if calls:  # the API wants every tool call answered: the answer is the validation error
                results = [
                    {"type": "tool_result", "tool_use_id": i, "is_error": True, "content": note}
                    for i in calls
                ]
                messages.append({"role": "user", "content": results})
            else:
                messages.append({"role": "user", "content": note})
        options: dict[str, Any] = {}
        if request.system:
            options["system"] = request.system
        anthropic = self.anthropic
        if self.native:
            schema = anthropic.transform_schema(output.model_json_schema())
            options["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        else:
            tool = {
                "name": name,
                "description": f"Record the answer. Its input is the answer, as {output.__name__}.",
                "input_schema": schema_of(output),
            }
            options["tools"] = [tool]
            options["tool_choice"] = {"type": "tool", "name": name, "disable_parallel_tool_use": True}
        try:
            message = await self.client.messages.create(
                model=self.choice.model, max_tokens=request.max_tokens, messages=messages, **options
            )
        except anthropic.APITimeoutError as error:
            raise Unreachable("the request timed out", timeout=True) from error
        except anthropic.APIConnectionError as error:
            cause = error.__cause__ or error
            raise Unreachable(
                f"{type(cause).__name__}: {cause}", timeout=False, maybe_billed=not _connect_failed(cause)
            ) from error
        except anthropic.APIStatusError as error:
            raise HttpFailure(
                error.status_code,
                _headers(error.response),
                _provider_message(error.body, self.secrets),
                _code(error.body),
            ) from error
        except anthropic.APIResponseValidationError as error:
            raise HttpFailure(502, _headers(error.response), "the reply was not a message", None) from error
        return self._answer(message, name)

    @staticmethod
    def _answer(message: Any, name: str) -> Answer:
        usage = message.usage
        answer = Answer(
            tokens_in=usage.input_tokens or 0,
            tokens_out=usage.output_tokens or 0,
            model=message.model,
            stop=message.stop_reason,
            truncated=message.stop_reason == "max_tokens",
        )
        texts = []
        for block in message.content:
            if block.type == "tool_use":
                answer.replay.append(
                    {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
                )
                if block.name == name and answer.data is None:
                    answer.data = block.input
            elif block.type == "text":
                texts.append(block.text)
                answer.replay.append({"type": "text", "text": block.text})
        if message.stop_reason == "refusal":
            answer.refusal = " ".join(" ".join(texts).split()) or "the model declined to answer"
            answer.data = None
        elif answer.data is None and texts:
            answer.text = "\n".join(texts)  # no tool call: perhaps JSON in prose; validation will say
        return answer
