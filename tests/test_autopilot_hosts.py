"""Two hosts on one test server: each host's samples, findings and remedies stay on that host."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from autarky.autopilot.types import ActionRecord, ActionStatus
from tests.fakes import FakeHost
from tests.test_autopilot import Harness, _first, actions, eventually, fast_settings, of_type, pending, status


def cache_file(data_dir: Path, name: str, age_days: float = 0) -> Path:
    path = data_dir / "cache" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 1024)
    if age_days:
        old = time.time() - age_days * 86400
        os.utime(path, (old, old))
    return path


async def test_each_hosts_samples_and_remedies_stay_on_that_host(client: Client, tmp_path: Path) -> None:
    full, calm = FakeHost(disk=90.0, cpu=11.0), FakeHost(disk=40.0, cpu=22.0)
    full_dir, calm_dir = tmp_path / "host-a", tmp_path / "host-b"
    full_stale, full_fresh = cache_file(full_dir, "stale.bin", age_days=30), cache_file(full_dir, "fresh.bin")
    calm_stale, calm_fresh = cache_file(calm_dir, "stale.bin", age_days=30), cache_file(calm_dir, "fresh.bin")
    harness = Harness(client, full_dir, full, host_id="host-a")
    await harness.add_host("host-b", calm, calm_dir)

    # A long cooldown: each remedy runs once per host, so the first outcomes stay in view.
    async with harness.running(fast_settings(action_cooldown=timedelta(hours=1))) as handle:
        # Both hosts are found (their workers poll the shared queue) and probed through their own queues.
        # A probe sent before a host's worker polls waits out HOST_PICKUP_TIMEOUT (10 s) first: allow two.
        both = await eventually(
            lambda: _first(
                status(handle), lambda s: s if all(s.hosts.get(h) for h in ("host-a", "host-b")) else None
            ),
            timeout=120,  # a busy machine: the pickup timeout, discovery, a resumed probe, a report
        )
        remedied = await eventually(
            lambda: _first(
                actions(handle),
                lambda rs: rs if of_type(rs, "clear_cache", ActionStatus.SUCCEEDED) and pruned(rs) else None,
            )
        )
        final = await status(handle)

    # Samples: each host's window holds its own probe's values, never the other's.
    assert both.hosts["host-a"].disk_percent == 90.0 and both.hosts["host-a"].cpu_percent == 11.0
    assert both.hosts["host-b"].disk_percent == 40.0 and both.hosts["host-b"].cpu_percent == 22.0
    assert full.probes > 0 and calm.probes > 0
    # Findings name their host; only the full disk has one.
    disk_findings = [f for f in final.findings if f.kind == "disk_high"]
    assert disk_findings and {f.host for f in disk_findings} == {"host-a"}
    # Remedies ran on host-a: its cache was cleared (and pruned by the housekeeping child workflow) ...
    assert not full_stale.exists() and not full_fresh.exists()
    # ... and host-b's cache, on the same machine in another directory, was not touched.
    assert calm_stale.exists() and calm_fresh.exists()
    host_remedies = [
        r for r in remedied if r.decision.candidate.action_type in {"clear_cache", "prune_cache"}
    ]
    assert host_remedies and {r.decision.candidate.host for r in host_remedies} == {"host-a"}
    # The housekeeping child workflow pruned host-a only (clear_cache may have emptied it first).
    assert all(r.detail.startswith("host-a: pruned ") for r in pruned(remedied))


def pruned(records: list[ActionRecord]) -> list[ActionRecord]:
    done = (ActionStatus.SUCCEEDED, ActionStatus.NOTHING_TO_DO)
    return [r for r in records if r.decision.candidate.action_type == "prune_cache" and r.status in done]


PROBE_FAILURES = "host_probe_failures"


@pytest.mark.slow
async def test_a_host_that_stops_polling_is_no_longer_probed(client: Client, tmp_path: Path) -> None:
    staying, leaving = FakeHost(), FakeHost()
    harness = Harness(client, tmp_path / "a", staying, host_id="staying")
    await harness.add_host("leaving", leaving, tmp_path / "b")
    settings = fast_settings()
    async with harness.serving():
        handle = await harness.start(settings)
        await eventually(lambda: _first(status(handle), lambda s: s.hosts.get("leaving")), timeout=120)
    # Only "staying" comes back; "leaving" still has pollers listed for a while but takes no work.
    harness.hosts.pop("leaving")
    async with harness.serving():
        probes = leaving.probes
        failed_before = (await status(handle)).totals.get(PROBE_FAILURES, 0)
        # One Monitor round waits HOST_PICKUP_TIMEOUT for the departed host's probe to go unclaimed ...
        unclaimed = await eventually(
            lambda: _first(
                status(handle), lambda s: s if s.totals.get(PROBE_FAILURES, 0) > failed_before else None
            ),
            timeout=120,  # the pickup timeout, on a machine that may be busy
        )
        # ... and its watcher probes it no more: while "staying" is probed 15 more times (the server fires the
        # 200 ms timers about once a second: longer than HOST_PICKUP_TIMEOUT), a probe of "leaving" would
        # have gone unclaimed and counted.
        staying_probes = staying.probes
        await eventually(lambda: asyncio.sleep(0, result=staying.probes >= staying_probes + 15), timeout=120)
        s = await eventually(
            lambda: _first(status(handle), lambda s: s if s.iterations > unclaimed.iterations else None)
        )
        await handle.terminate("test finished")
        await harness.stop_watchers()
    assert s.totals[PROBE_FAILURES] == unclaimed.totals[PROBE_FAILURES]
    assert leaving.probes == probes  # nothing ran on the departed host
    assert "staying" in s.hosts


async def test_a_host_without_a_pool_is_not_offered_a_pool_restart(client: Client, tmp_path: Path) -> None:
    # A worker container: memory is high, but no local pool runs there, so nobody serves its control queue.
    harness = Harness(client, tmp_path, FakeHost(memory=90.0, pool_members=0), host_id="container-1")
    async with harness.running(fast_settings(action_cooldown=timedelta(hours=1))) as handle:
        notified = await eventually(
            lambda: _first(actions(handle), lambda rs: of_type(rs, "notify", ActionStatus.SUCCEEDED))
        )
        await asyncio.sleep(1.0)  # more plan rounds
        records = await actions(handle)
        waiting = await pending(handle)
    assert notified[0].decision.candidate.host == "container-1"
    assert not [r for r in records if r.decision.candidate.action_type == "restart_worker_pool"]
    assert waiting == []
