"""The routed gateway fails safe (issue 27 item 1): it routes by the slot's effective split and salt, by
the slot as last read while the registry cannot be read (up to STALE_SPLIT_SECONDS), then all calls to the
incumbent; with nothing read yet it fails retryably. And the LLM slot's quality signal is `valid`.

A real registry on SQLite and PostgreSQL that really goes away: the SQLite file deleted under a disposed
engine, the PostgreSQL database dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog
from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError

from activities.models import routed as routed_module
from activities.models.registry import ModelRegistry
from activities.models.routed import RoutedGateway, variant_name
from activities.storage.handle import KnowledgeBaseHandle
from autarky.llm.settings import LlmSettings
from autarky.llm.types import LlmRequest
from autarky.models.types import Variant
from tests.llm_servers import OpenAIServer, Reply, openai_completion, openai_error
from tests.test_knowledge_base import db_url  # noqa: F401 (fixture)

SLOT = "research-analyst"
MODEL = "gpt-routed"
KEYS = [str(i) for i in range(400)]
ENV = {"OPENAI_API_KEY": "sk-test"}


class Verdict(BaseModel):
    score: float = Field(ge=0, le=1)


def _settings(base_url: str = "http://127.0.0.1:9/v1") -> LlmSettings:
    return LlmSettings(
        provider="openai",
        openai_base_url=base_url,
        openai_model=MODEL,
        request_timeout=timedelta(seconds=10),
        prices={MODEL: {"input": 1.0, "output": 2.0}, "gpt-challenger": {"input": 1.0, "output": 2.0}},
    )


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every route reads the registry (no 10 s cache), and the cached slot stays usable for an hour: the
    test's phases never depend on how fast the machine is."""
    monkeypatch.setattr(routed_module, "SLOT_CACHE_SECONDS", 0.0)
    monkeypatch.setattr(routed_module, "STALE_SPLIT_SECONDS", 3600.0)


def _take_away(url: str, handle: KnowledgeBaseHandle) -> None:
    """The registry goes away: its database is gone for every new connection."""
    handle.get().close()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    database = sa.make_url(url).database
    admin = sa.create_engine(sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{database}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def handle(db_url: str) -> Iterator[KnowledgeBaseHandle]:  # noqa: F811
    handle = KnowledgeBaseHandle(db_url)
    yield handle
    handle.get().close()


async def test_the_gateway_routes_by_the_salted_lease_and_falls_back_to_the_incumbent(
    db_url: str,  # noqa: F811
    handle: KnowledgeBaseHandle,
    fresh: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routed = RoutedGateway(_settings(), ENV, handle, SLOT)
    assert routed.default.choice is not None
    incumbent = variant_name(routed.default.choice)
    assert {(await routed.route(k)).name for k in KEYS} == {incumbent}  # registered, all to it
    registry = ModelRegistry(handle.get())
    registry.add_variant(SLOT, Variant(name="challenger", provider="openai", model="gpt-challenger"))
    split = {incumbent: 0.5, "challenger": 0.5}

    # A lease that lapsed routes nothing to the challenger.
    registry.set_split(SLOT, split, key="t0", salt="t0", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert {(await routed.route(k)).name for k in KEYS} == {incumbent}

    info = registry.set_split(
        SLOT, split, key="t1", salt="abtest/t1", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    expected = {k: info.choose(k, datetime.now(UTC)) for k in KEYS}
    assert {k: (await routed.route(k)).name for k in KEYS} == expected
    assert set(expected.values()) == {incumbent, "challenger"}
    unsalted = RoutedGateway(_settings(), ENV, handle, SLOT)
    assert any(expected[k] != info.model_copy(update={"salt": ""}).choose(k, datetime.now(UTC)) for k in KEYS)
    assert {k: (await unsalted.route(k)).name for k in KEYS} == expected  # every worker routes the same

    _take_away(db_url, handle)
    with structlog.testing.capture_logs() as logs:
        # Unreadable, read recently: the split as last read, key for key.
        assert {k: (await routed.route(k)).name for k in KEYS} == expected
        # Unread longer than STALE_SPLIT_SECONDS: everything to the incumbent, with a warning.
        monkeypatch.setattr(routed_module, "STALE_SPLIT_SECONDS", 0.0)
        assert {(await routed.route(k)).name for k in KEYS} == {incumbent}
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert any("by the slot as last read" in e["event"] for e in warnings)
    assert any("all calls to its active variant" in e["event"] and e["active"] == incumbent for e in warnings)

    # Nothing read yet: no variant to route to; the activity fails and Temporal retries it.
    with pytest.raises(Exception) as failed:
        await RoutedGateway(_settings(), ENV, handle, SLOT).route("1")
    assert not (isinstance(failed.value, ApplicationError) and failed.value.non_retryable), failed.value


async def test_the_llm_slots_quality_signal_is_valid(handle: KnowledgeBaseHandle, fresh: None) -> None:
    """An answer that validated records valid, an invalid one (after its repair) not valid, a failed call
    an error; none records a quality, so the slot records valid, latency_ms and cost."""
    with OpenAIServer() as server:
        routed = RoutedGateway(_settings(server.base_url), ENV, handle, SLOT)
        request = LlmRequest(prompt="Rate this paper.", max_tokens=200, purpose="triage")
        variant = await routed.route("1")
        await routed.complete(variant, "1", request, Verdict)
        bad = Reply(200, openai_completion(json.dumps({"score": 7})))
        server.script(bad, bad)
        with pytest.raises(ApplicationError):
            await routed.complete(variant, "2", request, Verdict)
        server.script(openai_error(400, "bad request"))
        with pytest.raises(ApplicationError):
            await routed.complete(variant, "3", request, Verdict)
    with handle.get().engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT routing_key, valid, error, quality FROM model_outcomes ORDER BY id")
        ).all()
    assert [(k, bool(v), bool(e), q) for k, v, e, q in rows] == [
        ("1", True, False, None),
        ("2", False, False, None),
        ("3", False, True, None),
    ]
    assert ModelRegistry(handle.get()).recorded_metrics(SLOT) == ["valid", "latency_ms", "cost"]
