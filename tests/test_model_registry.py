"""The model registry on SQLite and PostgreSQL: idempotent registration and routing changes, refused bad
input, outcome statistics checked by hand, the offline evaluation batch, and `autarky models` as a person
runs it.

PostgreSQL runs when AUTARKY_TEST_POSTGRES_URL is set (see tests/test_knowledge_base.py).
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from temporalio.exceptions import ApplicationError

from activities.models import offline_variants as offline
from activities.models.registry import ModelRegistry, p95
from activities.models.registry_activities import ModelRegistryActivities
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase, head_revision
from autarky.core.settings import AutarkySettings
from autarky.models.types import (
    ArmsInput,
    EvaluateBatch,
    OutcomeIn,
    Promote,
    RestoreIncumbent,
    SetSplit,
    SlotInfo,
    SlotRef,
    Variant,
)
from tests.test_cli import cli_environ, table_rows
from tests.test_knowledge_base import db_url  # noqa: F401 (fixture)

A = Variant(name="a", provider="openai", model="gpt-a")
B = Variant(name="b", provider="anthropic", model="claude-b", prompt_version="2", params={"temperature": 0.2})
C = Variant(name="c", provider="offline", model="offline-c")


@pytest.fixture
def kb(db_url: str) -> Iterator[KnowledgeBase]:  # noqa: F811
    base = KnowledgeBase(db_url)
    base.migrate()
    yield base
    base.close()


@pytest.fixture
def registry(kb: KnowledgeBase) -> ModelRegistry:
    return ModelRegistry(kb)


def _count(kb: KnowledgeBase, table: str) -> int:
    with kb.engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_migration_to_0005_and_back(kb: KnowledgeBase) -> None:
    from alembic import command
    from alembic.config import Config

    from activities.storage.knowledge_base import MIGRATIONS_DIR

    assert kb.revision() == head_revision()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with kb.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    assert kb.revision() == "0004"
    assert "model_slots" not in sa.inspect(kb.engine).get_table_names()
    kb.migrate()
    assert {"model_slots", "model_variants", "model_outcomes", "model_changes"} <= set(
        sa.inspect(kb.engine).get_table_names()
    )


def test_register_is_idempotent_and_never_moves_traffic(registry: ModelRegistry, kb: KnowledgeBase) -> None:
    info = registry.register_slot("summaries", [A, B], "a", description="summaries of items")
    assert info.active == "a" and info.split == {"a": 1.0} and info.variants == [A, B]
    assert info.description == "summaries of items" and not info.external
    assert registry.register_slot("summaries", [A, B], "a", description="summaries of items") == info

    registry.set_split("summaries", {"a": 0.9, "b": 0.1}, key="canary-1")
    again = registry.register_slot("summaries", [A, B, C], "a")  # a new variant, nothing else changes
    assert [v.name for v in again.variants] == ["a", "b", "c"]
    assert again.active == "a" and again.split == {"a": 0.9, "b": 0.1}
    assert registry.add_variant("summaries", C) == again  # the same variant again: a no-op
    assert _count(kb, "model_variants") == 3
    assert [s.name for s in registry.slots()] == ["summaries"]


def test_bad_registrations_refused_and_nothing_changed(registry: ModelRegistry, kb: KnowledgeBase) -> None:
    before = registry.register_slot("s", [A], "a")
    changed_a = A.model_copy(update={"model": "gpt-other"})
    with pytest.raises(ValueError, match="variant 'a' that differs"):
        registry.register_slot("s", [C, changed_a], "a")  # C would be new, but the call is one transaction
    with pytest.raises(ValueError, match="active variant 'zz'"):
        registry.register_slot("new", [A], "zz")
    with pytest.raises(ValueError, match="repeat"):
        registry.register_slot("new", [A, A], "a")
    with pytest.raises(ValueError, match="unknown model slot 'nope' \\(known: s\\)"):
        registry.add_variant("nope", C)
    with pytest.raises(ValueError, match="unknown model slot 'nope' \\(known: s\\)"):
        registry.slot("nope")
    assert registry.slot("s") == before
    assert _count(kb, "model_variants") == 1 and _count(kb, "model_slots") == 1


def test_routing_changes_are_idempotent_by_key(registry: ModelRegistry, kb: KnowledgeBase) -> None:
    registry.register_slot("s", [A, B, C], "a")
    split = registry.set_split("s", {"a": 0.9, "b": 0.1}, key="wf-1/split-10")
    assert split.split == {"a": 0.9, "b": 0.1} and split.active == "a"
    assert registry.set_split("s", {"a": 0.9, "b": 0.1}, key="wf-1/split-10") == split  # a retry
    assert registry.set_split("s", {"a": 0.5, "b": 0.5}, key="wf-1/split-50").split == {"a": 0.5, "b": 0.5}
    # The first change's retry arriving late changes nothing back.
    assert registry.set_split("s", {"a": 0.9, "b": 0.1}, key="wf-1/split-10").split == {"a": 0.5, "b": 0.5}

    promoted = registry.promote("s", "b", key="wf-1/promote")
    assert promoted.active == "b" and promoted.split == {"b": 1.0}
    assert registry.promote("s", "b", key="wf-1/promote") == promoted
    restored = registry.restore("s", "a", key="wf-2/rollback")
    assert restored.active == "b" and restored.split == {"a": 1.0}  # restore moves traffic, not `active`
    assert registry.restore("s", "a", key="wf-2/rollback") == restored
    assert [c["kind"] for c in registry.changes("s")] == ["split", "split", "promote", "restore"]
    assert _count(kb, "model_changes") == 4


def test_bad_routing_changes_refused_and_nothing_changed(registry: ModelRegistry, kb: KnowledgeBase) -> None:
    registry.register_slot("s", [A, B], "a")
    before = registry.set_split("s", {"a": 0.8, "b": 0.2}, key="k0")
    refused = [
        (lambda: registry.set_split("s", {"a": 0.8, "b": 0.3}, key="k1"), "sum to 1"),
        (lambda: registry.set_split("s", {"a": 0.8, "zz": 0.2}, key="k1"), "no variant 'zz'"),
        (lambda: registry.set_split("s", {}, key="k1"), "at least one"),
        (lambda: registry.set_split("nope", {"a": 1.0}, key="k1"), "unknown model slot 'nope'"),
        (lambda: registry.promote("s", "zz", key="k1"), "no variant 'zz' \\(known: a, b\\)"),
        (lambda: registry.restore("s", "zz", key="k1"), "no variant 'zz'"),
        (lambda: registry.promote("s", "b", key=""), "change key"),
        # The same key for another change: a bug in the caller, refused rather than silently ignored.
        (lambda: registry.set_split("s", {"a": 0.5, "b": 0.5}, key="k0"), "key 'k0' was used"),
        (lambda: registry.promote("s", "b", key="k0"), "key 'k0' was used"),
    ]
    for call, message in refused:
        with pytest.raises(ValueError, match=message):
            call()
    assert registry.slot("s") == before
    assert _count(kb, "model_changes") == 1
    # Refused keys were not used up.
    assert registry.promote("s", "b", key="k1").active == "b"


def test_slot_info_validates_its_split() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="sum to 1"):
        SlotInfo(name="s", active="a", split={"a": 0.5}, variants=[A], updated_at=now)
    with pytest.raises(ValueError, match="unknown variants"):
        SlotInfo(name="s", active="a", split={"a": 0.5, "b": 0.5}, variants=[A], updated_at=now)
    SlotInfo(name="s", active="a", split={"a": 0.5 + 1e-10, "b": 0.5}, variants=[A, B], updated_at=now)


def test_outcome_statistics_match_a_hand_computation(registry: ModelRegistry) -> None:
    registry.register_slot("s", [A, B, C], "a")
    now = datetime.now(UTC)
    rows = [
        # variant, latency, quality, valid, error, cost
        ("a", 100.0, 1.0, True, False, 0.010),
        ("a", 200.0, 0.5, True, False, 0.020),
        ("a", 300.0, None, False, False, 0.030),  # invalid, no quality
        ("a", 5000.0, None, False, True, 0.040),  # an error: a call, not a latency nor a quality
        ("b", 50.0, 0.0, True, False, 0.0),
        ("b", 70.0, 1.0, True, False, 0.0),
    ]
    for variant, latency, quality, valid, error, cost in rows:
        assert registry.record_outcome(
            OutcomeIn(
                slot="s",
                variant=variant,
                latency_ms=latency,
                quality=quality,
                valid=valid,
                error=error,
                cost=cost,
                tokens_in=10,
            )
        )
    # Outside the window: not counted.
    registry.record_outcome(OutcomeIn(slot="s", variant="a", latency_ms=9e9, at=now - timedelta(days=2)))
    since = now - timedelta(hours=1)

    a, b, c = registry.arm_stats(ArmsInput(slot="s", variants=["a", "b", "c"], since=since, metric="quality"))
    assert (a.variant, a.calls, a.errors, a.error_rate) == ("a", 4, 1, 0.25)
    assert a.valid_rate == pytest.approx(2 / 3)  # of the 3 answered calls
    assert a.cost_per_call == pytest.approx(0.1 / 4)
    assert a.latency_p95_ms == 300.0  # nearest rank of [100, 200, 300]
    assert a.metric.n == 2 and a.metric.mean == pytest.approx(0.75)
    assert a.metric.variance == pytest.approx(statistics.variance([1.0, 0.5]))  # 0.125
    assert (b.calls, b.errors, b.valid_rate, b.latency_p95_ms) == (2, 0, 1.0, 70.0)
    assert b.metric.mean == pytest.approx(0.5) and b.metric.variance == pytest.approx(0.5)
    assert (c.calls, c.latency_p95_ms, c.metric.n, c.metric.mean) == (0, None, 0, 0.0)

    # The order of the answer is the order asked.
    assert [s.variant for s in registry.arm_stats(ArmsInput(slot="s", variants=["b", "a"], since=since))] == [
        "b",
        "a",
    ]
    (valid,) = registry.arm_stats(ArmsInput(slot="s", variants=["a"], since=since, metric="valid"))
    assert valid.metric.n == 3 and valid.metric.mean == pytest.approx(2 / 3)
    assert valid.metric.variance == pytest.approx(statistics.variance([1, 1, 0]))
    (latency,) = registry.arm_stats(ArmsInput(slot="s", variants=["a"], since=since, metric="latency_ms"))
    assert latency.metric.mean == pytest.approx(200.0) and latency.metric.variance == pytest.approx(10_000.0)
    (cost,) = registry.arm_stats(ArmsInput(slot="s", variants=["a"], since=since, metric="cost"))
    assert cost.metric.n == 4 and cost.metric.mean == pytest.approx(0.025)
    assert cost.metric.variance == pytest.approx(statistics.variance([0.01, 0.02, 0.03, 0.04]))

    assert registry.outcome_counts("s", since) == {"a": 4, "b": 2, "c": 0}
    assert registry.outcome_counts("s", now - timedelta(days=3)) == {"a": 5, "b": 2, "c": 0}
    with pytest.raises(ValueError, match="no variant 'zz'"):
        registry.arm_stats(ArmsInput(slot="s", variants=["a", "zz"], since=since))


def test_p95_over_many_outcomes(registry: ModelRegistry) -> None:
    registry.register_slot("s", [A], "a")
    latencies = [float(x) for x in range(1, 201)]  # 1 … 200 ms
    registry.record_outcomes([OutcomeIn(slot="s", variant="a", latency_ms=x) for x in reversed(latencies)])
    (stats,) = registry.arm_stats(
        ArmsInput(slot="s", variants=["a"], since=datetime.now(UTC) - timedelta(minutes=5))
    )
    assert stats.latency_p95_ms == 190.0  # the 190th of 200
    assert p95([5.0]) == 5.0 and p95([]) is None and p95([1.0, 2.0, 3.0, 4.0, 100.0]) == 100.0
    assert p95([float(x) for x in range(1, 21)]) == 19.0


def test_outcomes_refused_or_deduplicated(registry: ModelRegistry, kb: KnowledgeBase) -> None:
    registry.register_slot("s", [A], "a")
    with pytest.raises(ValueError, match="unknown model slot 'nope'"):
        registry.record_outcome(OutcomeIn(slot="nope", variant="a", latency_ms=1))
    with pytest.raises(ValueError, match="no variant 'zz'"):
        registry.record_outcome(OutcomeIn(slot="s", variant="zz", latency_ms=1))
    with pytest.raises(ValueError, match="no variant 'zz'"):  # all or nothing
        registry.record_outcomes(
            [OutcomeIn(slot="s", variant="a", latency_ms=1), OutcomeIn(slot="s", variant="zz", latency_ms=1)]
        )
    with pytest.raises(ValueError, match="greater than or equal"):
        OutcomeIn(slot="s", variant="a", latency_ms=-1)
    with pytest.raises(ValueError, match="less than or equal"):
        OutcomeIn(slot="s", variant="a", latency_ms=1, quality=1.5)
    bad = OutcomeIn.model_construct(slot="s", variant="a", latency_ms=math.inf, quality=None)
    with pytest.raises(ValueError, match="finite"):
        registry.record_outcome(bad)
    assert _count(kb, "model_outcomes") == 0

    assert registry.record_outcome(OutcomeIn(slot="s", variant="a", latency_ms=1, ref="call-1"))
    assert not registry.record_outcome(OutcomeIn(slot="s", variant="a", latency_ms=1, ref="call-1"))
    assert registry.record_outcome(OutcomeIn(slot="s", variant="a", latency_ms=1))  # no ref: always new
    assert registry.record_outcome(OutcomeIn(slot="s", variant="a", latency_ms=1))
    assert _count(kb, "model_outcomes") == 3


def test_offline_variants_differ_in_quality_on_the_labels() -> None:
    examples = offline.examples()
    assert 150 <= len(examples) <= 300 and len({e.id for e in examples}) == len(examples)
    relevant = sum(e.relevant for e in examples)
    assert 0.35 < relevant / len(examples) < 0.65
    full, title = offline.labelled_accuracy("bm25"), offline.labelled_accuracy("bm25-title")
    assert full == pytest.approx(148 / 176) and title == pytest.approx(118 / 176)
    assert full - title > 0.1
    assert offline.draw("s", 3, 20) == offline.draw("s", 3, 20) != offline.draw("s", 4, 20)
    assert len(offline.draw("s", 1, 400)) == 400  # more than the examples: reshuffled rounds
    with pytest.raises(ValueError, match="no offline scorer"):
        offline.score("gpt", examples[0])


async def test_offline_evaluation_batch_records_once(db_url: str) -> None:  # noqa: F811
    handle = KnowledgeBaseHandle(db_url)
    activities = ModelRegistryActivities(AutarkySettings(), handle)
    assert await activities.ensure_default_model_slots() == [offline.OFFLINE_SLOT]
    assert await activities.ensure_default_model_slots() == [offline.OFFLINE_SLOT]
    slot = offline.OFFLINE_SLOT
    info = await activities.describe_model_slot(SlotRef(slot=slot))
    assert info.active == "bm25" and info.split == {"bm25": 1.0} and len(info.variants) == 2

    half = await activities.set_model_split(
        SetSplit(slot=slot, split={"bm25": 0.5, "bm25-title": 0.5}, key="t1")
    )
    assert half.split == {"bm25": 0.5, "bm25-title": 0.5}
    since = datetime.now(UTC) - timedelta(minutes=1)
    first = await activities.evaluate_offline_batch(EvaluateBatch(slot=slot, size=120, batch=0))
    assert (first.recorded, first.new) == (120, 120)
    again = await activities.evaluate_offline_batch(EvaluateBatch(slot=slot, size=120, batch=0))
    assert (again.recorded, again.new) == (120, 0)
    # Two concurrent attempts (a retry while the first still runs) record the batch once too.
    both = await asyncio.gather(
        *(activities.evaluate_offline_batch(EvaluateBatch(slot=slot, size=50, batch=1)) for _ in range(2))
    )
    assert sum(r.new for r in both) == 50
    assert _count(handle.get(), "model_outcomes") == 170

    full, title = await activities.model_arm_stats(
        ArmsInput(slot=slot, variants=["bm25", "bm25-title"], since=since, metric="quality")
    )
    assert full.calls + title.calls == 170 and 50 < full.calls < 120
    assert full.error_rate == 0 and full.valid_rate == 1 and full.latency_p95_ms is not None
    assert full.metric.mean > title.metric.mean + 0.05  # the labels tell the variants apart

    promoted = await activities.promote_model_variant(Promote(slot=slot, variant="bm25-title", key="t2"))
    assert promoted.active == "bm25-title"
    restored = await activities.restore_model_incumbent(
        RestoreIncumbent(slot=slot, incumbent="bm25", key="t3")
    )
    assert restored.split == {"bm25": 1.0} and restored.active == "bm25-title"
    # Re-registering the built-in slot leaves what the A/B test did alone.
    await activities.ensure_default_model_slots()
    assert (await activities.describe_model_slot(SlotRef(slot=slot))).split == {"bm25": 1.0}

    with pytest.raises(ApplicationError, match="unknown model slot 'nope'") as refused:
        await activities.describe_model_slot(SlotRef(slot="nope"))
    assert refused.value.non_retryable
    with pytest.raises(ApplicationError, match="sum to 1") as refused:
        await activities.set_model_split(SetSplit(slot=slot, split={"bm25": 0.5}, key="t4"))
    assert refused.value.non_retryable
    handle.get().close()


MODELS_MODULE = (sys.executable, "-m", "autarky.models.cli")


def _run(command: tuple[str, ...], *args: str, data_dir: Path) -> tuple[int, str]:
    import subprocess

    done = subprocess.run(
        [*command, *args],
        env=cli_environ(None, AUTARKY_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_models_cli_runs_as_a_module(tmp_path: Path) -> None:
    """`python -m autarky.models.cli` is the app `autarky models` runs (each command is tested below)."""
    code, out = _run(MODELS_MODULE, "list", data_dir=tmp_path)  # a fresh data dir: the built-in offline slot
    assert code == 0 and "research-relevance-offline" in out and "bm25-title" in out, out


class InProcess:
    """`autarky models ARGS` through the console script's own entry (run_cli) in this process: the same
    Typer app, settings from the environment and exit codes, without a second's interpreter start-up per
    command (the subprocess path has its own test above)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def __call__(self, *args: str, data_dir: Path) -> tuple[int, str]:
        from autarky.cli import common
        from autarky.cli.main import run_cli

        with self.monkeypatch.context() as patch:
            for name in list(os.environ):
                if name.startswith(("AUTARKY_", "TEMPORAL_")):
                    patch.delenv(name)
            patch.setenv("AUTARKY_DATA_DIR", str(data_dir))
            patch.setattr(common.console, "_width", 200)  # as COLUMNS=200 gives the subprocess
            self.capsys.readouterr()
            code = run_cli(["models", *args])
            captured = self.capsys.readouterr()
        return code, captured.out + captured.err


def test_models_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run = InProcess(monkeypatch, capsys)
    code, out = _run("list", data_dir=tmp_path)  # a fresh data dir: the built-in offline slot
    assert code == 0 and "research-relevance-offline" in out and "bm25-title" in out, out

    register = ("register", "summaries", "gpt", "--model", "gpt-4o-mini", "--active", "--description", "sums")
    code, out = _run(*register, data_dir=tmp_path)
    assert code == 0 and "summaries: gpt registered (gpt 100%)" in out, out
    code, out = _run(*register, data_dir=tmp_path)  # again: the same, fine
    assert code == 0, out
    code, out = _run(
        "register",
        "summaries",
        "claude",
        "--model",
        "sonnet",
        "--provider",
        "anthropic",
        data_dir=tmp_path,
    )
    assert code == 0, out
    code, out = _run("register", "summaries", "claude", "--model", "other", data_dir=tmp_path)
    assert code == 1 and "differs" in out, out

    code, out = _run(
        "record", "summaries", "gpt", "--latency-ms", "812", "--quality", "0.9", "--cost", "0.002",
        data_dir=tmp_path,
    )  # fmt: skip
    assert code == 0 and "summaries/gpt: outcome recorded" in out, out
    code, out = _run("record", "summaries", "gpt", "--latency-ms", "900", "--error", data_dir=tmp_path)
    assert code == 0, out
    code, out = _run("record", "summaries", "nope", "--latency-ms", "1", data_dir=tmp_path)
    assert code == 1 and "slot 'summaries' has no variant 'nope' (known: claude, gpt)" in out, out
    code, out = _run("record", "nope", "gpt", "--latency-ms", "1", data_dir=tmp_path)
    assert code == 1 and "unknown model slot 'nope' (known: research-relevance-offline, summaries)" in out, (
        out
    )

    for args in (("list",), ()):
        code, out = _run(*args, data_dir=tmp_path)
        assert code == 0, out
        rows = table_rows(out)
        assert ["summaries (external)", "gpt", "external", "gpt-4o-mini", "*", "100%", "2"] in rows, out
        assert ["", "claude", "anthropic", "sonnet", "", "0%", "0"] in rows, out

    kb = KnowledgeBase(f"sqlite:///{tmp_path / 'knowledge.db'}")
    (gpt,) = ModelRegistry(kb).arm_stats(
        ArmsInput(slot="summaries", variants=["gpt"], since=datetime.now(UTC) - timedelta(hours=1))
    )
    assert (gpt.calls, gpt.errors, gpt.metric.mean, gpt.cost_per_call) == (2, 1, 0.9, 0.001)
    kb.close()
