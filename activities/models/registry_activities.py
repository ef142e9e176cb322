"""Model-registry activities: read a slot, change its routing (split, promote, restore: idempotent by key;
renew a split's lease), read per-arm and guardrail-window statistics, and evaluate the built-in offline
slot on labelled examples (a batch through the split, or every example with both variants: paired).

They share the worker's `KnowledgeBaseHandle` (one knowledge base per process, opened and migrated on first
use; each call in a thread). Bad input (an unknown slot or variant, a split that does not sum to 1, a key
reused for another change) is a ValueError there, so a non-retryable ApplicationError here.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

from activities.models import offline_variants as offline
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.models.ab_types import ABTestInput
from autarky.models.types import (
    ArmsInput,
    ArmStats,
    EvaluateBatch,
    EvaluationResult,
    OutcomeIn,
    PairedBatch,
    PairedCounts,
    Promote,
    RenewSplit,
    RestoreIncumbent,
    SetSplit,
    SlotInfo,
    SlotRef,
    UntestedVariant,
    WindowInput,
    WindowStats,
)

if TYPE_CHECKING:
    from activities.models.registry import ModelRegistry


class ModelRegistryActivities:
    def __init__(self, settings: AutarkySettings, kb: KnowledgeBaseHandle | None = None) -> None:
        self.settings = settings
        self.kb = kb or KnowledgeBaseHandle(settings.knowledge_db_url)

    def _registry(self) -> ModelRegistry:
        # imported here: SQLAlchemy is loaded only by a worker that uses the registry
        from activities.models.registry import ModelRegistry

        return ModelRegistry(self.kb.get())

    @activity.defn(name="describe_model_slot")
    async def describe_model_slot(self, request: SlotRef) -> SlotInfo:
        return await self.kb.run(lambda: self._registry().slot(request.slot))

    @activity.defn(name="set_model_split")
    async def set_model_split(self, request: SetSplit) -> SlotInfo:
        return await self.kb.run(
            lambda: self._registry().set_split(
                request.slot, request.split, request.key, salt=request.salt, expires_at=request.expires_at
            )
        )

    @activity.defn(name="renew_model_split")
    async def renew_model_split(self, request: RenewSplit) -> bool:
        """Extend the split's lease; False when the slot no longer routes by it (see renew_split)."""
        return await self.kb.run(
            lambda: self._registry().renew_split(request.slot, request.split, request.expires_at)
        )

    @activity.defn(name="promote_model_variant")
    async def promote_model_variant(self, request: Promote) -> SlotInfo:
        return await self.kb.run(lambda: self._registry().promote(request.slot, request.variant, request.key))

    @activity.defn(name="restore_model_incumbent")
    async def restore_model_incumbent(self, request: RestoreIncumbent) -> SlotInfo:
        return await self.kb.run(
            lambda: self._registry().restore(request.slot, request.incumbent, request.key)
        )

    @activity.defn(name="model_arm_stats")
    async def model_arm_stats(self, request: ArmsInput) -> list[ArmStats]:
        return await self.kb.run(lambda: self._registry().arm_stats(request))

    @activity.defn(name="model_window_stats")
    async def model_window_stats(self, request: WindowInput) -> list[WindowStats]:
        return await self.kb.run(lambda: self._registry().window_stats(request))

    @activity.defn(name="ensure_default_model_slots")
    async def ensure_default_model_slots(self) -> list[str]:
        """Register the built-in slots (again: a no-op, also when an A/B test changed their routing)."""
        return await self.kb.run(lambda: offline.ensure_default_slots(self._registry()))

    @activity.defn(name="untested_model_variants")
    async def untested_model_variants(self) -> list[UntestedVariant]:
        """Variants that are not their slot's active one and never had an A/B test (no workflow
        `abtest/<slot>/<variant>` on the server). The built-in offline slot is left to people: its
        challenger is a known-worse baseline."""

        def read() -> list[tuple[SlotInfo, set[str]]]:
            registry = self._registry()
            return [(slot, _named_in_changes(registry.changes(slot.name))) for slot in registry.slots()]

        untested = []
        for slot, routed_before in await self.kb.run(read):
            if slot.name == offline.OFFLINE_SLOT:
                continue
            for variant in slot.variants:
                # Active, or given traffic by any change (a test, a promotion): not new any more, also
                # after the test's workflow left the server's retention.
                if variant.name == slot.active or variant.name in routed_before:
                    continue
                workflow_id = ABTestInput(slot=slot.name, challenger=variant.name).workflow_id()
                try:
                    await activity.client().get_workflow_handle(workflow_id).describe()
                except RPCError as error:
                    if error.status != RPCStatusCode.NOT_FOUND:
                        raise
                    untested.append(UntestedVariant(slot=slot.name, variant=variant.name))
        return untested

    @activity.defn(name="evaluate_offline_batch")
    async def evaluate_offline_batch(self, request: EvaluateBatch) -> EvaluationResult:
        """Score `size` labelled examples drawn for (slot, batch), each with the variant the slot routes
        ``"{example_id}:{batch}"`` to (its effective split now, its salt), and record one outcome each
        (quality: 1 when the judgement matches the label). Outcome refs ``eval:{run}:{batch}:{index}``: a
        retried or repeated batch records nothing twice."""

        def evaluate() -> EvaluationResult:
            registry = self._registry()
            info = registry.slot(request.slot)
            prefix = f"eval:{request.run}:{request.batch}:" if request.run else f"eval:{request.batch}:"
            if registry.count_refs(request.slot, prefix) >= request.size:
                return EvaluationResult(slot=request.slot, recorded=request.size, new=0)
            outcomes = []
            now = datetime.now(UTC)
            for index, example in enumerate(offline.draw(request.slot, request.batch, request.size)):
                routing_key = f"{example.id}:{request.batch}"
                variant = info.choose(routing_key, now)
                started = time.perf_counter()
                score = offline.score(variant, example)
                latency_ms = (time.perf_counter() - started) * 1000
                judged = score > offline.THRESHOLD
                outcomes.append(
                    OutcomeIn(
                        slot=request.slot,
                        variant=variant,
                        routing_key=routing_key,
                        latency_ms=latency_ms,
                        valid=True,
                        quality=1.0 if judged == example.relevant else 0.0,
                        ref=f"{prefix}{index}",
                    )
                )
            new = registry.record_outcomes(outcomes)
            return EvaluationResult(slot=request.slot, recorded=len(outcomes), new=new)

        return await self.kb.run(evaluate)

    @activity.defn(name="evaluate_offline_paired")
    async def evaluate_offline_paired(self, request: PairedBatch) -> PairedCounts:
        """Score every labelled example with both variants and record both outcomes (routing key: the
        example's id; refs from run, variant and example, so a retry records nothing twice), whatever the
        split: the two variants judge the same examples, and the 2×2 table of right and wrong says which
        is better (McNemar)."""

        def evaluate() -> PairedCounts:
            registry = self._registry()
            info = registry.slot(request.slot)
            for name in (request.incumbent, request.challenger):
                info.variant(name)  # ValueError: not a variant of the slot
            outcomes, right = [], {}
            for example in offline.examples():
                for variant in (request.incumbent, request.challenger):
                    started = time.perf_counter()
                    judged = offline.score(variant, example) > offline.THRESHOLD
                    latency_ms = (time.perf_counter() - started) * 1000
                    right[variant, example.id] = judged == example.relevant
                    outcomes.append(
                        OutcomeIn(
                            slot=request.slot,
                            variant=variant,
                            routing_key=example.id,
                            latency_ms=latency_ms,
                            valid=True,
                            quality=1.0 if right[variant, example.id] else 0.0,
                            ref=_paired_ref(request.run, variant, example.id),
                        )
                    )
            new = registry.record_outcomes(outcomes)
            cells = [
                (right[request.incumbent, e.id], right[request.challenger, e.id]) for e in offline.examples()
            ]
            return PairedCounts(
                slot=request.slot,
                examples=len(cells),
                both_right=cells.count((True, True)),
                only_incumbent=cells.count((True, False)),
                only_challenger=cells.count((False, True)),
                both_wrong=cells.count((False, False)),
                new=new,
            )

        return await self.kb.run(evaluate)


def _paired_ref(run: str, variant: str, example_id: str) -> str:
    """``paired:{run}:{variant}:{example}``, or its digest when that exceeds the ref column's 255."""
    ref = f"paired:{run}:{variant}:{example_id}"
    if len(ref) <= 255:
        return ref
    return "paired:" + hashlib.sha256(f"{run}\0{variant}\0{example_id}".encode()).hexdigest()


def _named_in_changes(changes: list[dict[str, Any]]) -> set[str]:
    """Variants a routing change of the slot named (split keys, promoted or restored variants)."""
    named: set[str] = set()
    for change in changes:
        payload = change.get("payload") or {}
        named.update(payload.get("split", {}))
        if "variant" in payload:
            named.add(payload["variant"])
    return named
