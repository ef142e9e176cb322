"""Canary secrets: `autarky up` with secrets in its environment leaks none of them anywhere it writes.

Anywhere means: every workflow history in the namespace (payloads decoded), the schedules, what the
status query returns, the process's own output, every file under the data dir (the logs of the server
and of the pool members, the knowledge base with its notifications, and the server's SQLite database).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from autarky.autopilot.types import AutopilotStatus
from autarky.core.temporal import AUTOPILOT_WORKFLOW_ID
from tests.test_up import autopilot_status, free_port, start_stack, stop_stack


def _jwt() -> str:
    def segment(data: dict[str, Any] | bytes) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    payload = {"sub": "canary", "nonce": secrets.token_hex(12)}
    return ".".join(
        [segment({"alg": "HS256", "typ": "JWT"}), segment(payload), segment(secrets.token_bytes(32))]
    )


@pytest.fixture
def canaries() -> dict[str, str]:
    """Unique random values; only OPENAI_API_KEY has a known shape (a JWT): the rest are hidden by value."""
    return {
        "AUTARKY_OPENAI_API_KEY": "canary" + secrets.token_hex(16),
        "AUTARKY_ANTHROPIC_API_KEY": "canary" + secrets.token_urlsafe(24),
        "GITHUB_TOKEN": "canary" + secrets.token_hex(20),
        "AWS_SECRET_ACCESS_KEY": "canary" + base64.b64encode(secrets.token_bytes(30)).decode(),
        "OPENAI_API_KEY": _jwt(),
    }


@pytest.fixture
def canary_env(tmp_path: Path, canaries: dict[str, str]) -> dict[str, str]:
    """The environment of tests/test_up.py (free ports, data dir in tmp, fast loop) plus the canaries."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AUTARKY_", "TEMPORAL_"))}
    return (
        environ
        | {
            "AUTARKY_DATA_DIR": str(tmp_path / "data"),
            "AUTARKY_SERVER_PORT": str(free_port()),
            "AUTARKY_UI_PORT": str(free_port()),
            "AUTARKY_METRICS_PORT": str(free_port()),
            "AUTARKY_SDK_METRICS_PORT": str(free_port()),
            "AUTARKY_WORKER_POOL_SIZE": "1",
            # Not a secret: the control. Configured like the canaries, it must turn up where they must not.
            "AUTARKY_HOST_ID": "decoy-" + secrets.token_hex(8),
            "AUTARKY_LOG_LEVEL": "debug",  # the most there is to leak
            "AUTARKY_AUTOPILOT__MONITOR_INTERVAL": "0.5",
            "AUTARKY_AUTOPILOT__EXECUTOR_INTERVAL": "0.5",
            "AUTARKY_AUTOPILOT__ANALYSIS_INTERVAL": "1",
            "AUTARKY_AUTOPILOT__OPTIMIZATION_INTERVAL": "2",
        }
        | canaries
    )


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, and what base64 strings decode to (payload data, metadata)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return
        yield decoded.decode("utf-8", "replace")


def _leaks(text: str, canaries: dict[str, str]) -> list[str]:
    return [name for name, value in canaries.items() if value in text]


@pytest.mark.slow
async def test_canary_secrets_appear_in_no_history_and_no_log(
    canary_env: dict[str, str], canaries: dict[str, str]
) -> None:
    data_dir = Path(canary_env["AUTARKY_DATA_DIR"])
    process = await start_stack(canary_env)
    try:
        client, status = await autopilot_status(canary_env, min_iterations=4)
        seen: dict[str, str] = {}
        async for execution in client.list_workflows():
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            history = await handle.fetch_history()
            seen[f"history of {execution.id}/{execution.run_id}"] = "\n".join(
                _strings(json.loads(history.to_json()))
            )
        async for listed in await client.list_schedules():
            description = await client.get_schedule_handle(listed.id).describe()
            seen[f"schedule {listed.id}"] = "\n".join(_strings(MessageToDict(description.raw_description)))
        after = await client.get_workflow_handle(AUTOPILOT_WORKFLOW_ID).query(
            "status", result_type=AutopilotStatus
        )
        seen["status query"] = status.model_dump_json() + after.model_dump_json()
    finally:
        seen_output = await stop_stack(process, data_dir)
    assert any(key.startswith(f"history of {AUTOPILOT_WORKFLOW_ID}/") for key in seen), list(seen)
    assert "Autarky is up" in seen_output
    seen["output of autarky up"] = seen_output

    files = [path for path in data_dir.rglob("*") if path.is_file()]
    logs = [path for path in files if path.parent == data_dir / "logs"]
    assert {path.name for path in logs} >= {"temporal.log", "pool-0.log"}
    assert (data_dir / "logs" / "pool-0.log").stat().st_size > 0
    for path in files:  # logs, the knowledge base, pid files, and the server's database with every payload
        seen[str(path.relative_to(data_dir))] = path.read_bytes().decode("utf-8", "replace")

    # The search sees what is there: the decoy host id, configured like the canaries, is found in the
    # autopilot's history (its payloads decoded: settings only travel as JSON payloads), in the
    # output, the pool member's log and the server's database.
    decoy = canary_env["AUTARKY_HOST_ID"]
    autopilot = next(
        text for where, text in seen.items() if where.startswith(f"history of {AUTOPILOT_WORKFLOW_ID}/")
    )
    assert decoy in autopilot and '"monitor_interval"' in autopilot
    for where in ("output of autarky up", "logs/pool-0.log", "temporal.db"):
        assert decoy in seen[where], where

    leaks = {where: names for where, text in seen.items() if (names := _leaks(text, canaries))}
    assert not leaks, f"canary secrets leaked: {leaks}"
