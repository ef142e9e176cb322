"""Local HTTP servers speaking OpenAI's Chat Completions and Anthropic's Messages wire formats.

`OpenAIServer` serves ``POST /v1/chat/completions`` (point the openai SDK at ``server.base_url``, which
ends in /v1); `AnthropicServer` serves ``POST /v1/messages`` (the anthropic SDK at ``server.url``).
Both record every request (`requests`: path, lower-case headers, JSON body) and answer from a script
first (`script(...)`: `Reply`s, or callables that make one from the request body), then with the default
responder: a valid answer for the schema the request carries (OpenAI: `response_format`'s JSON schema,
or in json_object mode the schema after ``JSON schema: `` in the system prompt; Anthropic: the forced
tool's input schema; with `output_config.format`, its schema, as a JSON text block), with token counts
of about four characters a token. `latency` delays every reply (the bench's simulated model time);
requests are served concurrently. `billed` lists the usage (tokens in, tokens out) of every successful
reply sent, what a provider would bill. `OpenAIServer(reasoning_tokens=N)` answers like a reasoning model
that thinks N tokens first: they count in `completion_tokens` (and its details), and when they leave no
room under the request's `max_completion_tokens` the answer is empty, cut off ("length").
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCHEMA_LINE = "JSON schema: "
_ids = itertools.count(1)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]


@dataclass
class Reply:
    status: int = 200
    # A dict is sent as JSON, bytes / str as they are; a callable gets the request body and returns one.
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    latency: float | None = None  # None: the server's


Script = Reply | Callable[[dict[str, Any]], Reply]


def tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value)
    return max(1, len(text) // 4)


def example(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A value valid against a JSON schema as pydantic writes them (refs, anyOf, bounds, enums)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example(root.get("$defs", root.get("definitions", {}))[name], root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
            return example(branches[0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: example(sub, root) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(schema.get("minItems", 1), 1)
        return [example(schema.get("items", {"type": "string"}), root) for _ in range(count)]
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2026-01-01T00:00:00Z"
        text = "example"
        text = text * (schema.get("minLength", 0) // len(text) + 1)
        return text[: schema.get("maxLength", len(text))]
    if kind in ("integer", "number"):
        value = 1
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "exclusiveMinimum" in schema:
            value = max(value, schema["exclusiveMinimum"] + 1)
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    return None


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread, answering POSTs with JSON."""

    path = "/"

    def __init__(self, latency: float = 0.0) -> None:
        self.requests: list[Recorded] = []
        self.billed: list[tuple[int, int]] = []
        self.latency = latency
        self.in_flight = self.max_in_flight = 0  # requests being answered at once (concurrency, not time)
        self._script: deque[Script] = deque()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this each answer waits ~40 ms on the
            # client's delayed ACK, which no real service adds.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                headers = {k.lower(): v for k, v in self.headers.items()}
                with owner._lock:
                    owner.requests.append(Recorded(self.path, headers, body))
                    scripted = owner._script.popleft() if owner._script else None
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                reply = owner.answer(self.path, body, scripted)
                delay = owner.latency if reply.latency is None else reply.latency
                if delay > 0:
                    time.sleep(delay)
                with owner._lock:
                    owner.in_flight -= 1
                payload = reply.body(body) if callable(reply.body) else reply.body
                if isinstance(payload, dict | list):
                    data, kind = json.dumps(payload).encode(), "application/json"
                else:
                    data, kind = (
                        (payload or "").encode() if isinstance(payload, str) else payload,
                        "text/plain",
                    )
                usage = payload.get("usage") if isinstance(payload, dict) and reply.status == 200 else None
                if isinstance(usage, dict):
                    with owner._lock:
                        owner.billed.append(
                            (
                                usage.get("prompt_tokens", usage.get("input_tokens", 0)),
                                usage.get("completion_tokens", usage.get("output_tokens", 0)),
                            )
                        )
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", kind)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # A short poll: shutdown() waits for it, and the tests start and stop many servers.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Script) -> None:
        """Answer the next requests with these, in order; then the default responder again."""
        with self._lock:
            self._script.extend(replies)

    def answer(self, path: str, body: dict[str, Any], scripted: Script | None) -> Reply:
        if path != self.path:
            return self.not_found(path)
        if scripted is None:
            return self.default(body)
        return scripted(body) if callable(scripted) else scripted

    def default(self, body: dict[str, Any]) -> Reply:
        raise NotImplementedError

    def not_found(self, path: str) -> Reply:
        raise NotImplementedError

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------------------------ OpenAI


def openai_completion(
    content: str | None,
    *,
    refusal: str | None = None,
    finish_reason: str = "stop",
    tokens_in: int = 10,
    tokens_out: int = 5,
    model: str = "gpt-5-mini-2025-08-07",
    reasoning_tokens: int = 0,
) -> dict[str, Any]:
    """A chat.completion object as the API returns it. `tokens_out` includes `reasoning_tokens`, as the
    API's `completion_tokens` does."""
    return {
        "id": f"chatcmpl-local{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": None,
    }


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return Reply(status, body, {"x-request-id": f"req_local{next(_ids)}", **(headers or {})})


def openai_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema a request asks for: response_format's, or the system prompt's in json_object mode."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return response_format["json_schema"]["schema"]
    for message in body.get("messages", []):
        if message.get("role") == "system" and isinstance(message.get("content"), str):
            for line in message["content"].splitlines():
                if line.startswith(SCHEMA_LINE):
                    return json.loads(line[len(SCHEMA_LINE) :])
    return None


class OpenAIServer(_Server):
    path = "/v1/chat/completions"

    def __init__(self, latency: float = 0.0, reasoning_tokens: int = 0) -> None:
        super().__init__(latency)
        self.reasoning_tokens = reasoning_tokens

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def default(self, body: dict[str, Any]) -> Reply:
        schema = openai_schema(body)
        content: str | None = json.dumps(example(schema)) if schema is not None else "Hello."
        reasoning = self.reasoning_tokens
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        out = reasoning + tokens(content)
        finish = "stop"
        if cap is not None and out > cap:  # the reasoning left no room for the answer: cut off, empty
            reasoning, out, content, finish = min(reasoning, cap), cap, "", "length"
        return Reply(
            200,
            openai_completion(
                content,
                finish_reason=finish,
                tokens_in=tokens(body.get("messages", [])),
                tokens_out=out,
                reasoning_tokens=reasoning,
                model=body.get("model", "gpt-5-mini"),
            ),
        )

    def not_found(self, path: str) -> Reply:
        return openai_error(404, f"Invalid URL (POST {path})")


# --------------------------------------------------------------------------------------------- Anthropic


def anthropic_message(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    tokens_in: int = 10,
    tokens_out: int = 5,
    model: str = "claude-haiku-4-5-20251001",
) -> dict[str, Any]:
    """A Message object as the API returns it."""
    return {
        "id": f"msg_local{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        },
    }


def tool_use(value: Any, *, stop_reason: str = "tool_use", tokens_in: int = 10, tokens_out: int = 5) -> Reply:
    """A reply calling the tool the request forces, with `value` as its input."""

    def make(body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("tool_choice") or {}).get("name", "answer")
        block = {"type": "tool_use", "id": f"toolu_local{next(_ids)}", "name": name, "input": value}
        return anthropic_message([block], stop_reason=stop_reason, tokens_in=tokens_in, tokens_out=tokens_out)

    return Reply(200, make)


def anthropic_json(
    value: Any, *, stop_reason: str = "end_turn", tokens_in: int = 10, tokens_out: int = 5
) -> Reply:
    """A structured-output reply (`output_config.format`): `value` as the JSON text of one text block."""
    text = value if isinstance(value, str) else json.dumps(value)
    block = {"type": "text", "text": text}
    return Reply(
        200, anthropic_message([block], stop_reason=stop_reason, tokens_in=tokens_in, tokens_out=tokens_out)
    )


def anthropic_error(status: int, type: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {
        "type": "error",
        "error": {"type": type, "message": message},
        "request_id": f"req_local{next(_ids)}",
    }
    return Reply(status, body, {"request-id": body["request_id"], **(headers or {})})


class AnthropicServer(_Server):
    path = "/v1/messages"

    def default(self, body: dict[str, Any]) -> Reply:
        wanted = (body.get("tool_choice") or {}).get("name")
        tool = next((t for t in body.get("tools", []) if t.get("name") == wanted), None)
        output_format = (body.get("output_config") or {}).get("format") or {}
        if output_format.get("type") == "json_schema":
            block: dict[str, Any] = {"type": "text", "text": json.dumps(example(output_format["schema"]))}
            stop = "end_turn"
        elif tool is None:
            block = {"type": "text", "text": "Hello."}
            stop = "end_turn"
        else:
            value = example(tool["input_schema"])
            block = {"type": "tool_use", "id": f"toolu_local{next(_ids)}", "name": wanted, "input": value}
            stop = "tool_use"
        prompt = [body.get("system", ""), body.get("messages", []), body.get("tools", [])]
        return Reply(
            200,
            anthropic_message(
                [block],
                stop_reason=stop,
                tokens_in=tokens(prompt),
                tokens_out=tokens(block),
                model=body.get("model", "claude-haiku-4-5"),
            ),
        )

    def not_found(self, path: str) -> Reply:
        return anthropic_error(404, "not_found_error", f"Not found: {path}")
