"""The model registry, A/B tests round 2 (issue 27), on SQLite and PostgreSQL: a test's split as a salted
lease (revision 0012), errors counted in the metric, the guardrails' window statistics, the metrics a slot
records, and the paired offline evaluation.

PostgreSQL runs when AUTARKY_TEST_POSTGRES_URL is set (see tests/test_knowledge_base.py).
"""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from temporalio.exceptions import ApplicationError

from activities.models import offline_variants as offline
from activities.models.registry import ModelRegistry, p95
from activities.models.registry_activities import ModelRegistryActivities
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase, head_revision
from autarky.core.settings import AutarkySettings
from autarky.models.routing import choose_variant
from autarky.models.types import (
    ArmsInput,
    EvaluateBatch,
    OutcomeIn,
    PairedBatch,
    RenewSplit,
    SetSplit,
    SlotInfo,
    Variant,
    WindowInput,
)
from tests import test_knowledge_base
from tests.test_research_queue import downgrade

# The fixtures: each test on SQLite and PostgreSQL, on a migrated knowledge base.
db_url, kb = test_knowledge_base.db_url, test_knowledge_base.kb

A = Variant(name="a", provider="external", model="a")
B = Variant(name="b", provider="external", model="b")
HALF = {"a": 0.5, "b": 0.5}


@pytest.fixture
def registry(kb: KnowledgeBase) -> ModelRegistry:
    registry = ModelRegistry(kb)
    registry.register_slot("s", [A, B], "a")
    return registry


def _soon(seconds: float = 600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# ------------------------------------------------------------------------------- the migration (item 1, 6)


def test_0012_adds_salt_and_lease_and_keeps_existing_slots(kb: KnowledgeBase) -> None:
    assert head_revision() >= "0012"  # later revisions (0013 looks, 0014 generated agents) come down too
    downgrade(kb, "0011")
    columns = {c["name"] for c in sa.inspect(kb.engine).get_columns("model_slots")}
    assert not {"salt", "split_expires_at"} & columns
    now = datetime.now(UTC).replace(tzinfo=None)
    with kb.engine.begin() as connection:  # a slot in the middle of a test, written by the old code
        connection.execute(
            sa.text(
                "INSERT INTO model_slots (name, description, external, active, split, created_at, updated_at)"
                " VALUES ('old', '', false, 'a', :split, :now, :now)"
            ),
            {"split": '{"a": 0.9, "b": 0.1}', "now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO model_variants (slot, name, provider, model, prompt_version, params, created_at)"
                " VALUES ('old', 'a', 'external', 'a', '1', '{}', :now), ('old', 'b', 'external', 'b', '1',"
                " '{}', :now)"
            ),
            {"now": now},
        )
    kb.migrate()
    info = ModelRegistry(kb).slot("old")
    # No salt and no lease: it routes exactly as before (the same positions, the split holds).
    assert (info.split, info.salt, info.split_expires_at) == ({"a": 0.9, "b": 0.1}, "", None)
    assert info.effective_split(datetime.now(UTC) + timedelta(days=365)) == {"a": 0.9, "b": 0.1}
    ModelRegistry(kb).record_outcome(OutcomeIn(slot="old", variant="b", latency_ms=1))
    downgrade(kb, "0011")  # and back: the slot and its outcomes stay
    with kb.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM model_outcomes")).scalar_one() == 1
    kb.migrate()


# ------------------------------------------------------------------------- the split as a lease (items 1, 6)


def test_a_split_carries_salt_and_lease_and_restore_and_promote_clear_them(registry: ModelRegistry) -> None:
    expires = _soon()
    info = registry.set_split("s", HALF, key="t1/split", salt="abtest/s/b", expires_at=expires)
    assert (info.split, info.salt, info.split_expires_at) == (HALF, "abtest/s/b", expires)
    assert registry.set_split("s", HALF, key="t1/split", salt="abtest/s/b", expires_at=expires) == info
    with pytest.raises(ValueError, match="key 't1/split' was used"):  # another salt: another change
        registry.set_split("s", HALF, key="t1/split", salt="other", expires_at=expires)
    with pytest.raises(ValueError, match="time zone"):
        registry.set_split("s", HALF, key="t1/naive", expires_at=datetime(2030, 1, 1))
    # The lease: the split until it expires, the active variant from then on.
    assert info.effective_split(expires - timedelta(seconds=1)) == HALF
    assert info.effective_split(expires) == {"a": 1.0}
    assert info.choose("user-1", expires) == "a"
    # salt None keeps the slot's salt; expires_at None: no lease (a caller from before round 2).
    kept = registry.set_split("s", {"a": 0.4, "b": 0.6}, key="t1/split-60")
    assert (kept.salt, kept.split_expires_at) == ("abtest/s/b", None)
    restored = registry.restore("s", "a", key="t1/restore")
    assert (restored.split, restored.salt, restored.split_expires_at) == ({"a": 1.0}, "", None)
    registry.set_split("s", HALF, key="t2/split", salt="t2", expires_at=_soon())
    promoted = registry.promote("s", "b", key="t2/promote")
    assert (promoted.active, promoted.split, promoted.salt, promoted.split_expires_at) == (
        "b",
        {"b": 1.0},
        "",
        None,
    )
    payloads = [c["payload"] for c in registry.changes("s")]
    assert payloads[0] == {"split": HALF, "salt": "abtest/s/b", "expires_at": expires.isoformat()}
    assert payloads[1] == {"split": {"a": 0.4, "b": 0.6}}  # what a caller from before round 2 wrote


def test_renewal_extends_only_the_split_it_names_and_never_reopens(registry: ModelRegistry) -> None:
    first = _soon(60)
    registry.set_split("s", HALF, key="t1/split", salt="t1", expires_at=first)
    later = _soon(600)
    assert registry.renew_split("s", {"b": 0.5, "a": 0.5}, later)
    assert registry.slot("s").split_expires_at == later
    assert registry.renew_split("s", HALF, first)  # an older renewal arriving late: never shortens
    assert registry.slot("s").split_expires_at == later
    assert not registry.renew_split("s", {"a": 0.9, "b": 0.1}, _soon(900))  # not the slot's split
    assert registry.slot("s").split_expires_at == later

    registry.restore("s", "a", key="t1/restore")
    assert not registry.renew_split("s", HALF, _soon(900))  # a restored slot is never re-opened
    info = registry.slot("s")
    assert (info.split, info.split_expires_at) == ({"a": 1.0}, None)

    # A lease that lapsed: its traffic went to the incumbent; renewing it would hand it back.
    registry.set_split("s", HALF, key="t2/split", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert not registry.renew_split("s", HALF, _soon())
    assert registry.slot("s").effective_split(datetime.now(UTC)) == {"a": 1.0}
    with pytest.raises(ValueError, match="unknown model slot 'nope'"):
        registry.renew_split("nope", HALF, _soon())


async def test_the_activities_set_and_renew_the_lease(db_url: str) -> None:
    activities = ModelRegistryActivities(AutarkySettings(), KnowledgeBaseHandle(db_url))
    registry = ModelRegistry(activities.kb.get())
    registry.register_slot("s", [A, B], "a")
    expires = _soon()
    info = await activities.set_model_split(
        SetSplit(slot="s", split=HALF, key="k", salt="t", expires_at=expires)
    )
    assert (info.salt, info.split_expires_at) == ("t", expires)
    assert await activities.renew_model_split(RenewSplit(slot="s", split=HALF, expires_at=_soon(900)))
    assert not await activities.renew_model_split(RenewSplit(slot="s", split={"a": 1.0}, expires_at=_soon()))
    with pytest.raises(ApplicationError, match="unknown model slot") as refused:
        await activities.renew_model_split(RenewSplit(slot="nope", split=HALF, expires_at=_soon()))
    assert refused.value.non_retryable
    activities.kb.get().close()


def test_slot_info_from_before_round_2_reads_as_then() -> None:
    old = {"name": "s", "active": "a", "split": HALF, "variants": [A, B], "updated_at": datetime.now(UTC)}
    info = SlotInfo.model_validate(old)  # a history's payload without the new fields
    assert (info.salt, info.split_expires_at) == ("", None)
    assert info.effective_split(datetime(2100, 1, 1, tzinfo=UTC)) == HALF
    assert info.choose("user-42", datetime.now(UTC)) == choose_variant("s", HALF, "user-42")


# --------------------------------------------------------------------------- errors in the metric (item 3)


def test_errors_count_as_the_worst_outcome(registry: ModelRegistry) -> None:
    rows = [
        # latency, quality, valid, error, cost, routing key
        (100.0, 1.0, True, False, 0.01, "u1"),
        (200.0, 0.5, True, False, 0.02, "u1"),  # the same user again: one unit
        (300.0, None, False, False, 0.03, "u2"),  # invalid, no quality
        (50.0, None, False, True, 0.04, None),  # a fast error (e.g. refused): counts as the bound
        (9000.0, None, False, True, 0.05, None),  # a slow error: its own latency
    ]
    registry.record_outcomes(
        [
            OutcomeIn(
                slot="s", variant="a", latency_ms=lat, quality=q, valid=v, error=e, cost=c, routing_key=k
            )
            for lat, q, v, e, c, k in rows
        ]
    )
    since = datetime.now(UTC) - timedelta(minutes=5)

    def metric(name: str, **extra: object) -> tuple[int, float, float]:
        (arm,) = registry.arm_stats(ArmsInput(slot="s", variants=["a"], since=since, metric=name, **extra))  # type: ignore[arg-type]
        assert arm.units == 4  # u1, u2 and two outcomes without a key
        return arm.metric.n, arm.metric.mean, arm.metric.variance

    def hand(values: list[float]) -> tuple[int, float, float]:
        return len(values), statistics.fmean(values), statistics.variance(values)

    assert metric("quality") == pytest.approx(hand([1.0, 0.5]))  # as before: errors left out
    assert metric("quality", errors_count=True) == pytest.approx(hand([1.0, 0.5, 0.0, 0.0]))
    assert metric("valid") == pytest.approx(hand([1, 1, 0]))
    assert metric("valid", errors_count=True) == pytest.approx(hand([1, 1, 0, 0, 0]))
    assert metric("latency_ms") == pytest.approx(hand([100, 200, 300]))
    latency = metric("latency_ms", errors_count=True, error_latency_ms=5000.0)
    assert latency == pytest.approx(hand([100, 200, 300, 5000, 9000]))
    assert (
        metric("cost", errors_count=True)
        == metric("cost")
        == pytest.approx(hand([0.01, 0.02, 0.03, 0.04, 0.05]))
    )
    with pytest.raises(ValueError, match="error_latency_ms"):
        ArmsInput(slot="s", variants=["a"], since=since, metric="latency_ms", errors_count=True)


def test_a_challenger_that_times_out_on_its_slowest_calls_is_slower_once_errors_count(
    registry: ModelRegistry,
) -> None:
    """Issue 27 item 3: fast on the calls it answers, because its slowest 3 % time out (recorded at the
    30 s timeout). Left out, the errors make it look 13 % faster (98 vs 113 ms); counted, it is slower."""
    rng = random.Random(27)
    timeout_ms = 30_000.0
    outcomes = [
        OutcomeIn(slot="s", variant="a", latency_ms=rng.lognormvariate(0, 0.5) * 100, routing_key=f"a{i}")
        for i in range(4000)
    ]
    latencies = sorted(rng.lognormvariate(0, 0.5) * 92 for _ in range(4000))
    cut = int(len(latencies) * 0.97)
    outcomes += [
        OutcomeIn(slot="s", variant="b", latency_ms=x, routing_key=f"b{i}")
        for i, x in enumerate(latencies[:cut])
    ]
    outcomes += [
        OutcomeIn(slot="s", variant="b", latency_ms=timeout_ms, error=True, valid=False, routing_key=f"t{i}")
        for i in range(len(latencies) - cut)
    ]
    registry.record_outcomes(outcomes)
    since = datetime.now(UTC) - timedelta(minutes=5)
    left_out = registry.arm_stats(ArmsInput(slot="s", variants=["a", "b"], since=since, metric="latency_ms"))
    assert left_out[1].metric.mean < left_out[0].metric.mean  # what round 1 promoted
    counted = registry.arm_stats(
        ArmsInput(
            slot="s",
            variants=["a", "b"],
            since=since,
            metric="latency_ms",
            errors_count=True,
            error_latency_ms=timeout_ms,
        )
    )
    assert counted[1].metric.mean > 1.5 * counted[0].metric.mean
    assert counted[1].metric.n == 4000 and counted[1].errors == 4000 - cut
    assert [arm.units for arm in counted] == [4000, 4000]


# ------------------------------------------------------------------------ the guardrails' window (item 2)


def test_window_statistics_match_a_hand_computation(registry: ModelRegistry) -> None:
    rng = random.Random(2)
    now = datetime.now(UTC)
    since = now - timedelta(minutes=10)
    incumbent = [rng.uniform(50, 150) for _ in range(301)]
    challenger = [rng.uniform(60, 200) for _ in range(157)]
    costs = [rng.choice([0.0, 0.001, 0.002]) for _ in range(157)]
    outcomes = [OutcomeIn(slot="s", variant="a", latency_ms=x, cost=0.001) for x in incumbent]
    outcomes += [OutcomeIn(slot="s", variant="a", latency_ms=7000, error=True, valid=False) for _ in range(5)]
    outcomes += [
        OutcomeIn(slot="s", variant="b", latency_ms=x, cost=c) for x, c in zip(challenger, costs, strict=True)
    ]
    outcomes += [
        OutcomeIn(slot="s", variant="b", latency_ms=9000, error=True, valid=False, cost=0.003)
        for _ in range(9)
    ]
    # Before the window: a slow past that must not count.
    outcomes += [
        OutcomeIn(slot="s", variant="b", latency_ms=1e6, at=since - timedelta(seconds=1)) for _ in range(50)
    ]
    registry.record_outcomes(outcomes)

    inc, cha = registry.window_stats(WindowInput(slot="s", incumbent="a", challenger="b", since=since))
    bound = p95(incumbent)
    assert bound is not None
    assert (inc.variant, inc.calls, inc.errors, inc.answered) == ("a", 306, 5, 301)
    assert (cha.variant, cha.calls, cha.errors, cha.answered) == ("b", 166, 9, 157)
    assert inc.p95_ms == pytest.approx(bound) and cha.p95_ms == pytest.approx(p95(challenger))
    assert inc.slow == sum(x > bound for x in incumbent) == 15  # 301 - ceil(0.95 * 301)
    assert cha.slow == sum(x > bound for x in challenger) and cha.slow > 15
    assert cha.cost_sum == pytest.approx(sum(costs) + 9 * 0.003)
    assert cha.cost_sumsq == pytest.approx(sum(c * c for c in costs) + 9 * 0.003**2)
    assert inc.cost_sum == pytest.approx(301 * 0.001)

    # The challenger first asked: its own p95 is the bound then (incumbent is whoever is named first).
    swapped = registry.window_stats(WindowInput(slot="s", incumbent="b", challenger="a", since=since))
    assert [w.variant for w in swapped] == ["b", "a"]
    assert swapped[1].slow == sum(x > p95(challenger) for x in incumbent)  # type: ignore[operator]
    empty = registry.window_stats(
        WindowInput(slot="s", incumbent="a", challenger="b", since=now + timedelta(hours=1))
    )
    assert [(w.calls, w.slow, w.p95_ms, w.cost_sum) for w in empty] == [(0, 0, None, 0.0)] * 2
    with pytest.raises(ValueError, match="no variant 'zz'"):
        registry.window_stats(WindowInput(slot="s", incumbent="a", challenger="zz", since=since))


# ----------------------------------------------------------------------------- recorded metrics (item 4)


def test_recorded_metrics_are_those_the_outcomes_carry(registry: ModelRegistry) -> None:
    assert registry.recorded_metrics("s") == []
    registry.record_outcome(OutcomeIn(slot="s", variant="a", latency_ms=5, valid=False))  # an LLM call
    assert registry.recorded_metrics("s") == ["valid", "latency_ms", "cost"]
    registry.record_outcome(OutcomeIn(slot="s", variant="b", latency_ms=5, quality=0.4))
    assert registry.recorded_metrics("s") == ["quality", "valid", "latency_ms", "cost"]
    offline.ensure_default_slots(registry)  # driven by labelled examples: quality from its first batch
    assert registry.recorded_metrics(offline.OFFLINE_SLOT) == ["quality", "valid", "latency_ms", "cost"]
    with pytest.raises(ValueError, match="unknown model slot 'nope'"):
        registry.recorded_metrics("nope")


# ------------------------------------------------------------------ offline evaluation (items 6 and 9)


async def test_the_offline_batch_routes_by_the_salt_and_the_lease(db_url: str) -> None:
    activities = ModelRegistryActivities(AutarkySettings(), KnowledgeBaseHandle(db_url))
    registry = ModelRegistry(activities.kb.get())
    slot = offline.OFFLINE_SLOT
    offline.ensure_default_slots(registry)
    half = {"bm25": 0.5, "bm25-title": 0.5}
    lapsed = datetime.now(UTC) - timedelta(seconds=1)
    registry.set_split(slot, half, key="lapsed", salt="t0", expires_at=lapsed)
    await activities.evaluate_offline_batch(EvaluateBatch(slot=slot, size=60, batch=0, run="lapsed"))
    registry.set_split(slot, half, key="salted", salt="abtest/t1", expires_at=_soon())
    await activities.evaluate_offline_batch(EvaluateBatch(slot=slot, size=200, batch=1, run="salted"))
    with activities.kb.get().engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT ref, routing_key, variant FROM model_outcomes WHERE slot = :slot"), {"slot": slot}
        ).all()
    assert {v for ref, _, v in rows if ref.startswith("eval:lapsed:")} == {"bm25"}  # the lease lapsed
    salted = [(key, v) for ref, key, v in rows if ref.startswith("eval:salted:")]
    assert all(v == choose_variant(slot, half, key, "abtest/t1") for key, v in salted)
    assert any(v != choose_variant(slot, half, key) for key, v in salted)  # the salt moved some keys
    activities.kb.get().close()


async def test_the_paired_evaluation_scores_every_example_with_both_variants_once(db_url: str) -> None:
    activities = ModelRegistryActivities(AutarkySettings(), KnowledgeBaseHandle(db_url))
    registry = ModelRegistry(activities.kb.get())
    slot = offline.OFFLINE_SLOT
    offline.ensure_default_slots(registry)
    request = PairedBatch(slot=slot, incumbent="bm25", challenger="bm25-title", run="abtest/x/run-1")
    counts = await activities.evaluate_offline_paired(request)
    examples = len(offline.examples())
    assert counts.examples == examples == 176 and counts.new == 2 * examples
    assert counts.both_right + counts.only_incumbent == 148  # bm25's labelled accuracy
    assert counts.both_right + counts.only_challenger == 118  # bm25-title's
    assert counts.both_right + counts.only_incumbent + counts.only_challenger + counts.both_wrong == examples
    assert counts.only_incumbent > counts.only_challenger
    # A retry records nothing twice and answers the same; another run records its own.
    again = await activities.evaluate_offline_paired(request)
    assert again.model_dump() == counts.model_dump() | {"new": 0}
    other = await activities.evaluate_offline_paired(request.model_copy(update={"run": "abtest/x/run-2"}))
    assert other.new == 2 * examples
    since = datetime.now(UTC) - timedelta(minutes=5)
    full, title = registry.arm_stats(ArmsInput(slot=slot, variants=["bm25", "bm25-title"], since=since))
    assert (full.calls, title.calls) == (2 * examples, 2 * examples)
    assert full.metric.mean == pytest.approx(148 / 176) and title.metric.mean == pytest.approx(118 / 176)
    assert full.units == examples  # routed by example: one unit each

    with pytest.raises(ApplicationError, match="no variant 'gpt'") as refused:
        await activities.evaluate_offline_paired(request.model_copy(update={"challenger": "gpt"}))
    assert refused.value.non_retryable
    with pytest.raises(ValueError, match="two variants"):
        PairedBatch(slot=slot, incumbent="bm25", challenger="bm25", run="r")
    activities.kb.get().close()
