"""The local pool's scaling findings (pure): its own work decides, host CPU does not; zero and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autarky.autopilot.types import MetricPoint
from autarky.scaling.policy_types import ScalingMemory, ScalingPolicy
from autarky.scaling.pool_policy import DESIRED, pool_scaling_findings

T0 = datetime(2024, 1, 1, tzinfo=UTC)
POLICY = ScalingPolicy(min_capacity=0, max_capacity=4, stabilisation_window=timedelta(seconds=30))


def point(seconds: float, cpu: float, members: int | None, **pool: float | None) -> MetricPoint:
    slots = 10 if members else None  # a pool at zero has no member to report its slots
    pool.setdefault("pool_backlog", 0)  # the queue was read (None: it could not be)
    return MetricPoint(
        at=T0 + timedelta(seconds=seconds),
        cpu_percent=cpu,
        memory_percent=30,
        disk_percent=40,
        pool_members=members,
        pool_desired=members,
        pool_slots_per_member=slots,
        **pool,
    )


def desired(points: list[MetricPoint], memory: ScalingMemory) -> list[str]:
    found = []
    for k in range(len(points)):
        findings = pool_scaling_findings("h", points[: k + 1], memory, POLICY, points[k].at)
        found += [f.params[DESIRED] for f in findings]
    return found


def test_host_cpu_held_by_others_never_grows_the_pool() -> None:
    busy = [point(15 * k, 97.0, 1, pool_in_flight=0, pool_backlog=0) for k in range(40)]
    assert "2" not in desired(busy, ScalingMemory())


def test_a_pool_at_zero_grows_on_its_first_backlog_though_no_member_reports_slots() -> None:
    memory = ScalingMemory()
    idle = [point(15 * k, 5.0, 0, pool_backlog=0) for k in range(3)]
    assert desired(idle, memory) == []
    waiting = point(50, 5.0, 0, pool_backlog=25, pool_backlog_age_seconds=3)
    findings = pool_scaling_findings("h", [*idle, waiting], memory, POLICY, waiting.at)
    assert [f.kind for f in findings] == ["pool_overloaded"] and findings[0].params[DESIRED] == "3"


def test_slots_in_use_keep_the_members_and_their_end_lets_them_go() -> None:
    memory = ScalingMemory()
    busy = [point(15 * k, 20.0, 2, pool_in_flight=17) for k in range(6)]
    assert desired(busy, memory) == []  # 17 of 20 slots: neither more nor fewer
    done = [point(90 + 15 * k, 20.0, 2, pool_in_flight=0) for k in range(40)]
    assert desired([*busy, *done], memory)[-1:] == ["0"]  # idle for the idle window: to zero


def test_a_load_that_could_not_be_read_is_unknown_not_idle() -> None:
    memory = ScalingMemory()
    # The queue could not be read (no backlog figure): no finding, however long.
    blind = [point(15 * k, 5.0, 2, pool_in_flight=0, pool_backlog=None) for k in range(40)]
    assert desired(blind, memory) == []
    # Members that have not reported their slots in use, at a pool whose queue reads empty.
    silent = [point(600 + 15 * k, 5.0, 2, pool_backlog=0) for k in range(40)]
    assert desired(silent, memory) == []
