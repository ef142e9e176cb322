"""Fake probes for workflow tests: the real probes have their own tests (test_probes.py)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio import activity

from autarky.autopilot.types import (
    CpuStats,
    DiskStats,
    HostProbeInput,
    HostSample,
    MemoryStats,
    NetworkIOStats,
    NetworkProbeInput,
    NetworkSample,
    ProcessInfo,
    TargetProbeResult,
)
from autarky.core.actions import ActionRequest, ActionResult


@dataclass
class FakeHost:
    """Metric values the fake probes report; tests change them to inject findings."""

    cpu: float = 10.0
    memory: float = 30.0
    disk: float = 40.0
    latency_ms: float = 1.0
    cpu_jitter: float = 0.0  # ± uniform noise on CPU, so anomaly detection has a normal to learn
    pool_members: int = 1  # pool members the probe reports (a host without a pool gets no restarts)
    # The share of the CPU and memory in use that the pool's members hold (0: other processes' load,
    # which no pool restart answers).
    pool_share: float = 1.0
    # What the pool's own probe reads (release 28): tasks running on it and waiting for it, slots per member.
    pool_in_flight: int = 0
    pool_backlog: int = 0
    pool_backlog_age_seconds: float = 0.0
    pool_slots: int = 10
    probes: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    @activity.defn(name="probe_host")
    async def probe_host(self, request: HostProbeInput) -> HostSample:
        self.probes += 1
        cpu = self.cpu + self.rng.uniform(-self.cpu_jitter, self.cpu_jitter)
        return HostSample(
            taken_at=datetime.now(UTC),
            hostname="test-host",
            cpu=CpuStats(percent=cpu, per_core_percent=[cpu], load_1m=0, load_5m=0, load_15m=0, core_count=1),
            memory=MemoryStats(
                total_bytes=1 << 30,
                available_bytes=1 << 29,
                used_percent=self.memory,
                swap_total_bytes=0,
                swap_used_percent=0,
            ),
            disk=DiskStats(path="/", total_bytes=1 << 34, used_bytes=1 << 33, used_percent=self.disk),
            network=NetworkIOStats(
                bytes_sent=0,
                bytes_recv=0,
                packets_sent=0,
                packets_recv=0,
                errors_in=0,
                errors_out=0,
                drops_in=0,
                drops_out=0,
            ),
            temperatures_note="not available on this platform",
            own_processes=[
                ProcessInfo(
                    pid=4000 + i,
                    name="python",
                    rss_bytes=int(
                        self.memory / 100 * (1 << 30) * self.pool_share / max(1, self.pool_members)
                    ),
                    cpu_percent=cpu * self.pool_share / max(1, self.pool_members),  # one core: host terms
                    role="pool member",
                )
                for i in range(self.pool_members)
            ],
            pool_members=self.pool_members,
            pool_desired=self.pool_members,
            pool_in_flight=min(self.pool_in_flight, self.pool_members * self.pool_slots),
            pool_slots_per_member=self.pool_slots,
            pool_backlog=self.pool_backlog,
            pool_backlog_age_seconds=self.pool_backlog_age_seconds,
        )

    @activity.defn(name="probe_network")
    async def probe_network(self, request: NetworkProbeInput) -> NetworkSample:
        return NetworkSample(
            taken_at=datetime.now(UTC),
            targets=[
                TargetProbeResult(
                    target=t, attempts=1, successes=1, loss_ratio=0.0, latency_ms_avg=self.latency_ms
                )
                for t in request.targets
            ],
        )


@dataclass
class SlowActions:
    """Stand-ins for notify/clear_cache that take a while and record how many ran at once."""

    seconds: float = 0.6
    running: int = 0
    max_running: int = 0
    ran: list[str] = field(default_factory=list)

    async def _work(self, request: ActionRequest) -> ActionResult:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        self.ran.append(request.action_type)
        return ActionResult(success=True, improvement=0.1, detail="slow fake")

    @activity.defn(name="notify")
    async def notify(self, request: ActionRequest) -> ActionResult:
        return await self._work(request)

    @activity.defn(name="clear_cache")
    async def clear_cache(self, request: ActionRequest) -> ActionResult:
        return await self._work(request)
