"""The LLM gateway: one structured question to OpenAI, Anthropic or an OpenAI-compatible server.

`LlmGateway.complete(request, Output)` returns the answer validated as `Output` with its tokens and cost.
It is meant to be called from activities, and fails the way they should: with `ApplicationError`s that
Temporal retries (rate limits, 5xx, overload, timeouts, unreachable servers; `next_retry_delay` from the
provider's Retry-After) or does not (bad key, unknown model, bad request, refusals, output that stays
invalid after one repair, a spent budget, an unpriced model, reasoning that used the whole completion cap),
with a message a person can act on. The SDKs never retry (`max_retries=0`): Temporal does, with its
backoff, and sees every failure. API keys come from the environment only and appear in no payload, log
line or error message.

Money: a model without a price (autarky/llm/prices.py) is refused before any call. Every paid HTTP call
is reserved in the spending ledger at its price cap first (refused when a budget would be exceeded) and
settled at its cost after (activities/storage/ledger.py); `ledger=None` is an unmetered gateway, for tests
without a knowledge base only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

from activities.models.providers import (
    Answer,
    AnthropicProvider,
    HttpFailure,
    OpenAIProvider,
    Unreachable,
    input_bound,
)
from activities.storage.ledger import Budgets, BudgetSpent, Reservation, SpendingLedger, attempt_key
from autarky.core.redaction import redact_text
from autarky.core.retry_after import retry_after_delay
from autarky.llm.errors import (
    LLM_BAD_REQUEST,
    LLM_BUDGET_SPENT,
    LLM_INVALID_OUTPUT,
    LLM_NOT_CONFIGURED,
    LLM_RATE_LIMITED,
    LLM_REASONING_EXHAUSTED,
    LLM_REFUSED,
    LLM_REJECTED,
    LLM_UNAVAILABLE,
    LLM_UNPRICED,
)
from autarky.llm.prices import Pricing, price_settings, pricing
from autarky.llm.settings import LlmSettings, resolve_provider
from autarky.llm.types import LlmRequest, LlmResult, LlmUsage, ProviderChoice, cost_of

if TYPE_CHECKING:
    from activities.storage.handle import KnowledgeBaseHandle

log = structlog.get_logger(__name__)

T = TypeVar("T", bound=BaseModel)

SETTINGS = "AUTARKY_LLM__"

MAX_RETRY_AFTER = timedelta(hours=1)
MAX_ERROR_DETAIL = 500  # characters of a validation error in a message

_MODEL_SETTING = {
    "openai": "OPENAI_MODEL",
    "anthropic": "ANTHROPIC_MODEL",
    "openai-compatible": "COMPATIBLE_MODEL",
}
_URL_SETTING = {
    "openai": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "openai-compatible": "COMPATIBLE_BASE_URL",
}


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> timedelta | None:
    """The wait a 429/5xx asks for: `retry-after-ms` (OpenAI), else `retry-after` in seconds or as an HTTP
    date; None when there is none (the retry policy's backoff applies). At most MAX_RETRY_AFTER."""
    delay: timedelta | None = None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            delay = timedelta(milliseconds=float(ms))
        except ValueError:
            delay = None
    if delay is None:
        return retry_after_delay(headers.get("retry-after"), now, MAX_RETRY_AFTER)
    return min(delay, MAX_RETRY_AFTER) if delay > timedelta(0) else None


def describe_validation_error(error: ValidationError) -> str:
    """One line: each bad field and why, without the values (they may quote the prompt)."""
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or '(answer)'}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False)
    ]
    text = f"{error.error_count()} validation error(s) for {error.title}: " + "; ".join(parts)
    return text if len(text) <= MAX_ERROR_DETAIL else text[: MAX_ERROR_DETAIL - 1] + "…"


def _unfence(text: str) -> str:
    """Small local models in json_object mode still wrap JSON in a Markdown fence now and then."""
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()


def _logged(usage: LlmUsage) -> dict[str, Any]:
    """Usage as log fields. Not `tokens_in`: the log redaction hides every field named like *token*."""
    return {"tok_in": usage.tokens_in, "tok_out": usage.tokens_out, "cost_usd": round(usage.cost_usd, 6)}


class LlmGateway:
    """Asks the configured provider for structured answers. One per worker: the SDK client (its connection
    pool) is made at the first call and reused; concurrent calls share it."""

    def __init__(
        self,
        settings: LlmSettings,
        environ: Mapping[str, str] = os.environ,
        *,
        ledger: SpendingLedger | None,
    ) -> None:
        """`ledger`: where paid calls are reserved, settled and checked against the budgets; None only for
        an unmetered gateway (tests without a knowledge base): no budget then stops it."""
        self.settings = settings
        self.environ = environ
        self.ledger = ledger
        self.choice: ProviderChoice | None = resolve_provider(settings, environ)
        self._provider: OpenAIProvider | AnthropicProvider | None = None

    @classmethod
    def metered(
        cls, settings: LlmSettings, environ: Mapping[str, str], kb: KnowledgeBaseHandle
    ) -> LlmGateway:
        """A gateway whose calls go to the spending ledger of `kb` (and so share every budget)."""
        return cls(settings, environ, ledger=SpendingLedger(kb))

    @property
    def offline(self) -> bool:
        """No provider configured: callers take their offline path instead of calling `complete`."""
        return self.choice is None

    async def complete(self, request: LlmRequest, output: type[T]) -> LlmResult[T]:
        """Ask once; on invalid output ask once more with the error; raise ApplicationError on failure."""
        choice = self._choice()
        price = self._pricing(choice, request)
        provider = self._client(choice)
        usage = LlmUsage(provider=choice.kind, model=choice.model)
        started = time.monotonic()
        repair: tuple[Answer, str] | None = None
        key = attempt_key()  # the ledger's rows of this activity attempt
        for attempt in (1, 2):
            reservation = await self._reserve(choice, price, request, output, repair, key, usage, started)
            try:
                answer = await provider.ask(request, output, repair)
            except (HttpFailure, Unreachable) as failure:
                # An error status is not billed; no answer at all may have been (timeout): keep the cap.
                maybe_billed = isinstance(failure, Unreachable) and failure.maybe_billed
                if reservation is not None and not maybe_billed:
                    await self._settle(reservation, 0.0, 0, 0)
                raise self._failed(choice, request, failure, usage, started) from None
            cost = price.cost(answer.tokens_in, answer.tokens_out)
            if reservation is not None:
                await self._settle(reservation, cost, answer.tokens_in, answer.tokens_out)
            usage.tokens_in += answer.tokens_in
            usage.tokens_out += answer.tokens_out
            usage.cost_usd += cost
            if self._reasoned_away(answer):
                raise self._error(
                    choice,
                    request,
                    usage,
                    started,
                    f"{choice.kind} model {choice.model} spent all {request.max_tokens} completion tokens "
                    f"({answer.reasoning_tokens} of them reasoning) before answering ({request.purpose}): "
                    f"raise {request.max_tokens_setting or 'max_tokens'} ({request.max_tokens}) or lower "
                    f"{SETTINGS}REASONING_EFFORT ({self.settings.reasoning_effort or 'the default'})",
                    LLM_REASONING_EXHAUSTED,
                )
            if answer.refusal is not None:
                raise self._error(
                    choice,
                    request,
                    usage,
                    started,
                    f"the model refused ({request.purpose}): {answer.refusal[:MAX_ERROR_DETAIL]}",
                    LLM_REFUSED,
                )
            result, problem = self._validate(answer, output, request)
            if result is not None:
                latency = int((time.monotonic() - started) * 1000)
                log.info(
                    "llm answered",
                    provider=choice.kind,
                    model=choice.model,
                    served_by=answer.model,
                    purpose=request.purpose,
                    **_logged(usage),
                    latency_ms=latency,
                    repaired=attempt == 2,
                )
                return LlmResult[output](  # type: ignore[valid-type]
                    output=result,
                    provider=choice.kind,
                    model=choice.model,
                    tokens_in=usage.tokens_in,
                    tokens_out=usage.tokens_out,
                    cost_usd=usage.cost_usd,
                    repaired=attempt == 2,
                    latency_ms=latency,
                )
            log.warning(
                "llm answer invalid",
                provider=choice.kind,
                model=choice.model,
                purpose=request.purpose,
                attempt=attempt,
                stop=answer.stop,
                problem=problem,
            )
            repair = (answer, self._repair_note(problem, answer, choice))
        # Truncation included: the same request retried by Temporal would be cut off (and paid for) again.
        hint = (
            f"; raise {request.max_tokens_setting or 'max_tokens'} ({request.max_tokens})"
            if answer.truncated
            else ""
        )
        raise self._error(
            choice,
            request,
            usage,
            started,
            f"{choice.kind} model {choice.model} gave invalid output for {output.__name__} "
            f"({request.purpose}) twice, the second time after being told what was wrong: {problem}{hint}",
            LLM_INVALID_OUTPUT,
        )

    # --------------------------------------------------------------------------------------------- parts

    def _choice(self) -> ProviderChoice:
        if self.choice is None:
            raise ApplicationError(
                "no LLM provider configured (offline): set OPENAI_API_KEY or ANTHROPIC_API_KEY, or "
                f"{SETTINGS}COMPATIBLE_BASE_URL for a local OpenAI-compatible server",
                type=LLM_NOT_CONFIGURED,
                non_retryable=True,
            )
        return self.choice

    def _client(self, choice: ProviderChoice) -> OpenAIProvider | AnthropicProvider:
        if self._provider is None:
            key = self.environ.get(choice.key_env, "").strip() if choice.key_env else ""
            if choice.key_env and not key:
                raise ApplicationError(
                    f"LLM provider {choice.kind} needs an API key: set {choice.key_env}",
                    type=LLM_NOT_CONFIGURED,
                    non_retryable=True,
                )
            timeout = self.settings.request_timeout.total_seconds()
            if choice.kind == "anthropic":
                self._provider = AnthropicProvider(choice, key, timeout, self.settings.anthropic_output)
            else:
                self._provider = OpenAIProvider(
                    choice,
                    key or None,
                    timeout,
                    self.settings.compatible_response_format,
                    self.settings.reasoning_effort,
                )
        return self._provider

    def _pricing(self, choice: ProviderChoice, request: LlmRequest) -> Pricing:
        """The model's price; refused before any call when it has none, since no budget could stop it."""
        found = pricing(self.settings.prices, choice.kind, choice.model, choice.base_url)
        if found is None:
            raise ApplicationError(
                f"{choice.kind} model {choice.model} has no known price ({request.purpose}), so no budget "
                f"could stop its spending: set {price_settings(choice.model)}, or choose a priced model "
                f"({SETTINGS}{_MODEL_SETTING[choice.kind]})"
                + (
                    f"; {choice.base_url} is not on this machine or a private network, so it may bill"
                    if choice.kind == "openai-compatible"
                    else ""
                ),
                LlmUsage(provider=choice.kind, model=choice.model).model_dump(),
                type=LLM_UNPRICED,
                non_retryable=True,
            )
        return found

    async def _reserve(
        self,
        choice: ProviderChoice,
        price: Pricing,
        request: LlmRequest,
        output: type[BaseModel],
        repair: tuple[Answer, str] | None,
        key: str,
        usage: LlmUsage,
        started: float,
    ) -> Reservation | None:
        """Reserve the call's price cap in the ledger, or refuse it (LLM_BUDGET_SPENT). None: nothing to
        reserve (a free model, or an unmetered gateway)."""
        if self.ledger is None or price.free:
            return None
        cap = price.cost(input_bound(request, output, repair), request.max_tokens)
        budgets = Budgets(self.settings.budget_per_day_usd, self.settings.budget_per_cycle_usd)
        try:
            return await self.ledger.reserve(
                key, request.purpose, f"{choice.kind}:{choice.model}", cap, request.budget_scope, budgets
            )
        except BudgetSpent as spent:
            raise self._error(choice, request, usage, started, str(spent), LLM_BUDGET_SPENT) from None

    async def _settle(self, reservation: Reservation, cost: float, tokens_in: int, tokens_out: int) -> None:
        assert self.ledger is not None
        await self.ledger.settle(reservation, cost, tokens_in, tokens_out)

    @staticmethod
    def _reasoned_away(answer: Answer) -> bool:
        """Cut off at the cap with nothing to show but reasoning: a bigger cap or less effort is needed, and
        asking again (a repair, a retry) would only pay for the same again."""
        empty = answer.data is None and not (answer.text or "").strip()
        return answer.truncated and empty and answer.reasoning_tokens > 0

    @staticmethod
    def _validate(answer: Answer, output: type[T], request: LlmRequest) -> tuple[T | None, str]:
        try:
            if answer.data is not None:
                return output.model_validate(answer.data), ""
            if answer.text and answer.text.strip():
                return output.model_validate_json(_unfence(answer.text)), ""
            problem = "the answer was empty"
        except ValidationError as error:
            problem = describe_validation_error(error)
        if answer.truncated:
            problem = f"the answer was cut off at max_tokens ({request.max_tokens}): {problem}"
        return None, problem

    @staticmethod
    def _repair_note(problem: str, answer: Answer, choice: ProviderChoice) -> str:
        how = (
            "by calling the tool again" if choice.kind == "anthropic" else "as one JSON object, nothing else"
        )
        shorter = (
            " Keep it shorter: the previous one was cut off at the token limit." if answer.truncated else ""
        )
        return (
            f"Your previous answer was invalid: {problem}. Answer again with the complete, corrected answer, "
            f"{how}, following the schema exactly.{shorter}"
        )

    def _failed(
        self,
        choice: ProviderChoice,
        request: LlmRequest,
        failure: HttpFailure | Unreachable,
        usage: LlmUsage,
        started: float,
    ) -> ApplicationError:
        where = f"{choice.kind} at {choice.base_url}"
        if isinstance(failure, Unreachable):
            what = (
                f"timed out after {self.settings.request_timeout.total_seconds():g} s"
                if failure.timeout
                else f"could not be reached ({failure.detail})"
            )
            return self._error(
                choice, request, usage, started, f"{where} {what}; retrying", LLM_UNAVAILABLE, False
            )
        status, code = failure.status, failure.code
        said = f": {failure.message}" if failure.message else ""
        head = f"{where} answered HTTP {status}{said}"
        delay = retry_after(failure.headers)
        key_env = choice.key_env
        model_setting, url_setting = (
            SETTINGS + _MODEL_SETTING[choice.kind],
            SETTINGS + _URL_SETTING[choice.kind],
        )
        if status == 429 and code != "insufficient_quota":
            return self._error(
                choice,
                request,
                usage,
                started,
                f"{head}; rate limited, retrying",
                LLM_RATE_LIMITED,
                False,
                delay,
            )
        if status in (408, 409) or status >= 500:  # 529: Anthropic overloaded
            return self._error(
                choice, request, usage, started, f"{head}; retrying", LLM_UNAVAILABLE, False, delay
            )
        if status == 429 or status == 402:
            hint = f"the quota or credit is exhausted: check the billing of the account of {key_env}'s key"
        elif status == 401:
            hint = (
                f"the API key was refused: check {key_env}"
                if key_env
                else f"the server wants a key: set {SETTINGS}COMPATIBLE_API_KEY_ENV to its variable's name"
            )
        elif status == 403:
            hint = (
                f"access denied: check that the key in {key_env} may use model {choice.model}"
                if key_env
                else ("access denied by the server")
            )
        elif status == 404:
            hint = (
                f"model {choice.model} not found at {choice.base_url}: check {model_setting}, {url_setting}"
            )
            if choice.kind == "openai-compatible":
                hint += f" (Ollama: `ollama pull {choice.model}`)"
        elif status in (400, 413, 422):  # this request, not the account: another item may well pass
            output_hint = (
                f" ({SETTINGS}ANTHROPIC_OUTPUT=tool for models without structured outputs)"
                if choice.kind == "anthropic"
                else ""
            )
            hint = (
                f"the request was rejected: check that model {choice.model} supports structured output"
                f"{output_hint} and max_tokens={request.max_tokens}, and that the prompt fits its context"
            )
            return self._error(choice, request, usage, started, f"{head}; {hint}", LLM_BAD_REQUEST, True)
        else:
            hint = "the request was refused"
        return self._error(choice, request, usage, started, f"{head}; {hint}", LLM_REJECTED, True)

    def _error(
        self,
        choice: ProviderChoice,
        request: LlmRequest,
        usage: LlmUsage,
        started: float,
        message: str,
        kind: str,
        non_retryable: bool = True,
        delay: timedelta | None = None,
    ) -> ApplicationError:
        """The ApplicationError, logged; its details carry the usage so far (the workflow's budget counts
        failed calls too). The key is redacted from the message whatever produced it."""
        key = self.environ.get(choice.key_env, "") if choice.key_env else ""
        message = redact_text(message, [key] if key else [])
        log.warning(
            "llm call failed",
            provider=choice.kind,
            model=choice.model,
            purpose=request.purpose,
            type=kind,
            retryable=not non_retryable,
            next_retry_delay=delay,
            **_logged(usage),
            latency_ms=int((time.monotonic() - started) * 1000),
            error=message,
        )
        details: Any = usage.model_dump()
        return ApplicationError(
            message, details, type=kind, non_retryable=non_retryable, next_retry_delay=delay
        )


__all__ = [
    "LLM_BAD_REQUEST",
    "LLM_BUDGET_SPENT",
    "LLM_INVALID_OUTPUT",
    "LLM_NOT_CONFIGURED",
    "LLM_RATE_LIMITED",
    "LLM_REASONING_EXHAUSTED",
    "LLM_REFUSED",
    "LLM_REJECTED",
    "LLM_UNAVAILABLE",
    "LLM_UNPRICED",
    "LlmGateway",
    "cost_of",
    "resolve_provider",
    "retry_after",
]
