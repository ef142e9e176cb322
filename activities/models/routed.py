"""The routed gateway: each LLM call of a model slot goes to the variant the slot's split picks (sticky
by a routing key), and its outcome is recorded in the registry: latency, tokens, cost, whether the
output validated, whether it failed. That is the traffic an A/B test of the slot reads.

The configured LLM (`llm.*`) is the slot's first variant; more are registered by people (`autarky models
register SLOT NAME --provider anthropic --model …`) and tested against it (`autarky abtest start`).

The LLM slot's quality signal is its validation pass rate, the metric ``valid``: 1 for an answer that
parsed and validated against the requested output type, 0 for an invalid answer (and, in a test that
counts errors, for a failed call). It records no ``quality``: nothing judges the answers' content, and a
pass rate written as "quality" would pass for a judgement it is not. So a test of this slot uses
``--metric valid`` (or latency_ms, cost); the autopilot's tests pick it
(activities/models/abtest_requests.py).

Routing fails safe. The split is read through a cache (SLOT_CACHE_SECONDS) and routed by its effective
split (a test's lease that lapsed routes all to the active variant). When the registry cannot be read, the
cached slot still routes for STALE_SPLIT_SECONDS after it was read; after that every call goes to the
cached active variant (the incumbent), with a warning, until the registry answers again. With nothing
cached the call fails, retryably.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from activities.models.llm import LlmGateway
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.ledger import SpendingLedger
from autarky.llm.errors import LLM_INVALID_OUTPUT
from autarky.llm.settings import LlmSettings
from autarky.llm.types import LlmRequest, LlmResult, ProviderChoice
from autarky.models.types import OutcomeIn, SlotInfo, Variant

log = structlog.get_logger(__name__)
T = TypeVar("T", bound=BaseModel)

SLOT_CACHE_SECONDS = 10.0  # a split change reaches every worker within this
# A registry that cannot be read: the cached split routes this long after it was read, then the incumbent.
STALE_SPLIT_SECONDS = 60.0
LLM_PROVIDERS = ("openai", "anthropic", "openai-compatible")


def variant_name(choice: ProviderChoice) -> str:
    """The configured LLM as a variant name, e.g. ``openai-gpt-5-mini``."""
    return f"{choice.kind}-{choice.model}".replace(" ", "-")[:128]


class RoutedGateway:
    def __init__(
        self, settings: LlmSettings, environ: Mapping[str, str], kb: KnowledgeBaseHandle, slot: str
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.kb = kb
        self.slot = slot
        # Every variant's calls go to the same ledger, so an A/B challenger shares the budgets.
        self.ledger = SpendingLedger(kb)
        self.default = LlmGateway(settings, environ, ledger=self.ledger)
        self._gateways: dict[str, LlmGateway] = {}
        self._cached: tuple[float, SlotInfo] | None = None  # (monotonic time read, slot)
        self._attempted = 0.0  # the last read attempt (monotonic): a registry that is down is not asked
        # on every call, only once per SLOT_CACHE_SECONDS

    def _registry(self):  # type: ignore[no-untyped-def]
        from activities.models.registry import ModelRegistry  # SQLAlchemy: on first use

        return ModelRegistry(self.kb.get())

    async def route(self, routing_key: str) -> Variant:
        """The variant for this key: the slot's effective split and salt (the configured LLM is registered
        as its first variant the first time); the cached slot or its incumbent when the registry cannot
        be read (see the module doc)."""
        now = time.monotonic()
        cached = self._cached
        if cached is None or (
            now - cached[0] > SLOT_CACHE_SECONDS and now - self._attempted > SLOT_CACHE_SECONDS
        ):
            choice = self.default.choice
            if choice is None:
                raise ApplicationError("no LLM is configured", type="LlmNotConfigured", non_retryable=True)
            first = Variant(name=variant_name(choice), provider=choice.kind, model=choice.model)

            def ensure() -> SlotInfo:
                registry = self._registry()
                return registry.register_slot(
                    self.slot, [first], first.name, description="LLM analysis of research items"
                )

            self._attempted = now
            try:
                self._cached = cached = (now, await self.kb.run(ensure))
            except Exception as error:
                if cached is None:
                    raise  # nothing to route by: the activity fails and is retried
                stale = now - cached[0] > STALE_SPLIT_SECONDS
                log.warning(
                    "could not read the model slot: routing "
                    + ("all calls to its active variant" if stale else "by the slot as last read"),
                    slot=self.slot,
                    active=cached[1].active,
                    age_s=round(now - cached[0], 1),
                    error=str(error),
                )
        read_at, info = cached
        if now - read_at > STALE_SPLIT_SECONDS:
            return info.variant(info.active)  # unread too long: the incumbent, not a test left unwatched
        return info.variant(info.choose(routing_key, datetime.now(UTC)))

    def _gateway(self, variant: Variant) -> LlmGateway:
        if variant.provider not in LLM_PROVIDERS:
            raise ApplicationError(
                f"variant {variant.name!r} of slot {self.slot!r} is served by {variant.provider!r}, not "
                f"by an LLM provider ({', '.join(LLM_PROVIDERS)}): the gateway cannot call it",
                type="LlmNotConfigured",
                non_retryable=True,
            )
        if variant.name not in self._gateways:
            model_field = {"openai": "openai_model", "anthropic": "anthropic_model"}.get(
                variant.provider, "compatible_model"
            )
            settings = self.settings.model_copy(
                update={"provider": variant.provider, model_field: variant.model}
            )
            self._gateways[variant.name] = LlmGateway(settings, self.environ, ledger=self.ledger)
        return self._gateways[variant.name]

    async def complete(
        self, variant: Variant, routing_key: str, request: LlmRequest, output: type[T]
    ) -> LlmResult[T]:
        """Ask `variant` and record the call's outcome (also a failed one) for the slot's A/B tests."""
        gateway = self._gateway(variant)
        started = time.perf_counter()
        try:
            result = await gateway.complete(request, output)
        except ApplicationError as error:
            usage = error.details[0] if error.details and isinstance(error.details[0], dict) else {}
            await self._record(
                variant,
                routing_key,
                started,
                tokens_in=int(usage.get("tokens_in", 0)),
                tokens_out=int(usage.get("tokens_out", 0)),
                cost=float(usage.get("cost_usd", 0.0)),
                valid=False,
                error=error.type != LLM_INVALID_OUTPUT,  # an invalid answer is an answer, not an error
            )
            raise
        await self._record(
            variant,
            routing_key,
            started,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost=result.cost_usd,
            valid=True,
            error=False,
        )
        return result

    async def _record(self, variant: Variant, routing_key: str, started: float, **fields: object) -> None:
        outcome = OutcomeIn(
            slot=self.slot,
            variant=variant.name,
            routing_key=routing_key,
            latency_ms=(time.perf_counter() - started) * 1000,
            **fields,  # type: ignore[arg-type]
        )
        try:
            await self.kb.run(lambda: self._registry().record_outcome(outcome))
        except Exception as error:  # the answer matters more than its statistics: log and go on
            log.warning(
                "could not record an LLM outcome", slot=self.slot, variant=variant.name, error=str(error)
            )
