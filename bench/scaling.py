"""Replay load traces through the scaling policy in simulation, next to an HPA-like, a fixed and an oracle.

    .venv/bin/python bench/scaling.py [--trace FILE ...] [--data DIR] [--units-at-p99 N] [--startup MIN]
                                      [--hpa-target U] [--fixed-quantile Q] [--policy FIELD=VALUE ...]

A trace is any CSV with the columns `timestamp,value` (ISO 8601 or Unix seconds; the value is the demand
in any unit: requests, CPU, bytes). Without --trace, the load-like NAB series under DIR
(../shared/data/nab/data) are replayed: the AWS CloudWatch machine metrics (CPU, ELB requests, network,
disk), the tweet volumes and the artificial series without anomalies (a flat and a noisy steady load,
daily cycles). Not replayed by default, as they are not a service's load: ad prices, road speeds and
travel times, the artificial series with anomalies (one goes negative). --policy overrides a default of
ScalingPolicy (e.g. `--policy scale_up_utilisation=0.8 --policy stabilisation_window=5m`).

The simulation (the same for every policy and every trace):
- Clock: 1-minute steps. Each row's value is the demand from its timestamp until the next row's (held);
  a minute covered by several rows takes the highest. Rows stay in file order: a row whose successor is
  not later lasts the trace's median interval, as does the last row; gaps are held.
- Capacity: demand is served in units; a unit serves 1/N of the trace's 99th-percentile demand (N =
  --units-at-p99, default 10), so every trace needs several units and a spike above the 99th percentile
  needs more. At least 1 unit, no upper bound (the policies run with max_capacity = 10,000).
- Each minute the monitor sees utilisation = demand / (units in service × unit size), unbounded above 1
  (like requests per target, not a CPU that saturates), and the policy returns the desired count.
  Units asked for start serving --startup minutes later (default 3); they are paid from the request
  (pending units are part of the desired count the policy sees, as an ASG's desired vs in service).
  Removing units is immediate (pending ones first). Every policy starts at what the first minute needs.
- Violation minute: a minute whose demand exceeds the capacity in service. Cost: instance-minutes paid
  (in service + starting). Action: a change of the desired count.
- autarky: autarky.scaling.policy.recommend with ScalingPolicy's defaults (record_event on every change);
  its changes that approval_needed would hold for a person are counted, and granted at once.
- hpa-like: desired = ceil(in service × utilisation / target) when |utilisation / target - 1| > 0.1, else
  unchanged; a decrease goes only to the highest recommendation of the last 5 minutes (scale-down
  stabilisation); no rate limit on scaling up.
- fixed: the units that cover the trace's 95th-percentile demand (--fixed-quantile), all the time.
- oracle: knows the future. Serving minute t takes ceil(demand(t) / unit) units, started --startup
  minutes before; the least it can pay without a violation is the most any minute of [t, t + startup]
  needs. Its cost is the floor (100 %); cost/oracle is each policy's instance-minutes over it.
- Steady load: an hour (60 steps from the trace's start) is steady when its mean demand is within 10 % of
  the hours before and after it; actions in steady hours per steady hour measure flapping.

ScalingPolicy's defaults were chosen with this benchmark on the default traces (a grid over the
thresholds, the window and the steps, checked leave-one-trace-out). A policy that scales up only above a
utilisation u keeps about 1/u of the demand, and the oracle pays for its integer units only: below 110 %
of the oracle's cost the policy must wait for full saturation, and then has more violation minutes than
the HPA-like baseline. The defaults keep the SLO and steady-load goals and cost less than HPA-like.

From Python (e.g. a tuning script): `simulate_trace(load_trace(path), Settings(), policy=...)`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `autarky` package importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import ValidationError

from autarky.scaling.policy import approval_needed, recommend, record_event
from autarky.scaling.policy_types import LoadSample, ScalingMemory, ScalingPolicy
from bench.load_traces import (  # noqa: F401 (the trace reading is part of this script's interface)
    DEFAULT_TRACES,
    MAX_STEPS,
    NAB_DATA,
    STEP,
    Trace,
    TraceError,
    default_traces,
    load_trace,
    parse_timestamp,
    read_trace,
    to_steps,
)

MAX_UNITS = 10_000
EPSILON = 1e-9


# ------------------------------------------------------------------------------------------ simulation
@dataclass(frozen=True)
class Settings:
    units_at_p99: float = 10.0  # a unit serves this share of the trace's 99th-percentile demand
    startup_minutes: int = 3
    hpa_target: float = 0.7
    hpa_tolerance: float = 0.1
    hpa_window_minutes: int = 5
    fixed_quantile: float = 0.95


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def unit_size(demand: Sequence[float], settings: Settings) -> float:
    """What one unit serves: 1/N of the 99th percentile (the peak, or 1, when that is 0)."""
    base = quantile(demand, 0.99) or max(demand) or 1.0
    return base / settings.units_at_p99


def needed(demand: float, unit: float) -> int:
    return max(1, math.ceil(demand / unit - EPSILON))


@dataclass
class Result:
    violation_minutes: int = 0
    instance_minutes: int = 0
    actions: int = 0
    approvals: int = 0  # changes that would wait for a person (autarky only)
    steady_actions: int = 0
    action_steps: list[int] = field(default_factory=list, repr=False)

    def __iadd__(self, other: Result) -> Result:
        self.violation_minutes += other.violation_minutes
        self.instance_minutes += other.instance_minutes
        self.actions += other.actions
        self.approvals += other.approvals
        self.steady_actions += other.steady_actions
        return self


# A decision: (step, desired, units in service, utilisation seen) -> new desired count
Decide = Callable[[int, int, int, float], int]


def replay(demand: Sequence[float], unit: float, startup: int, decide: Decide) -> Result:
    """One reactive policy over one trace: start-up delay for new units, immediate removal."""
    result = Result()
    desired = in_service = needed(demand[0], unit)
    pending: deque[list[int]] = deque()  # [ready at step, units]
    for k, d in enumerate(demand):
        while pending and pending[0][0] <= k:
            in_service += pending.popleft()[1]
        new = decide(k, desired, in_service, d / (in_service * unit))
        if new != desired:
            result.actions += 1
            result.action_steps.append(k)
            if new > desired:
                pending.append([k + startup, new - desired])
            else:
                drop = desired - new
                while drop and pending:  # cancel the newest starting units first
                    take = min(drop, pending[-1][1])
                    pending[-1][1] -= take
                    drop -= take
                    if not pending[-1][1]:
                        pending.pop()
                in_service -= drop
            desired = new
        if d > in_service * unit * (1 + EPSILON):
            result.violation_minutes += 1
        result.instance_minutes += desired
    return result


def autarky_decider(policy: ScalingPolicy, result: Result) -> Decide:
    memory = ScalingMemory()
    start = datetime(2000, 1, 1)
    minute = timedelta(minutes=1)

    def decide(k: int, desired: int, in_service: int, utilisation: float) -> int:
        at = start + k * minute
        sample = LoadSample.model_construct(
            at=at, utilisation=utilisation, backlog=None, backlog_age_seconds=None
        )
        new = recommend(policy, desired, sample, memory).desired
        if new != desired:
            record_event(memory, at)
            if approval_needed(policy, desired, new):
                result.approvals += 1
        return new

    return decide


def hpa_decider(settings: Settings) -> Decide:
    window: deque[tuple[int, int]] = deque()  # (step, recommendation)
    target, tolerance, span = settings.hpa_target, settings.hpa_tolerance, settings.hpa_window_minutes

    def decide(k: int, desired: int, in_service: int, utilisation: float) -> int:
        ratio = utilisation / target
        raw = desired if abs(ratio - 1) <= tolerance else math.ceil(in_service * ratio - EPSILON)
        raw = max(1, min(MAX_UNITS, raw))
        while window and window[0][0] <= k - span:
            window.popleft()
        window.append((k, raw))
        if raw >= desired:
            return raw
        return min(desired, max(r for _, r in window))

    return decide


def simulate_oracle(demand: Sequence[float], unit: float, startup: int) -> Result:
    need = [needed(d, unit) for d in demand]
    window: deque[int] = deque()  # indices of a sliding maximum over [k, k + startup]
    paid: list[int] = []
    n = len(need)
    for k in range(n + startup):
        if k < n:
            while window and need[window[-1]] <= need[k]:
                window.pop()
            window.append(k)
        t = k - startup
        if t >= 0:
            while window[0] < t:
                window.popleft()
            paid.append(need[window[0]])
    result = Result(instance_minutes=sum(paid))
    for k in range(1, n):
        if paid[k] != paid[k - 1]:
            result.actions += 1
            result.action_steps.append(k)
    return result


def simulate_fixed(demand: Sequence[float], unit: float, settings: Settings) -> Result:
    units = needed(quantile(demand, settings.fixed_quantile), unit)
    violations = sum(1 for d in demand if d > units * unit * (1 + EPSILON))
    return Result(violation_minutes=violations, instance_minutes=units * len(demand))


def steady_hours(demand: Sequence[float]) -> list[bool]:
    """Per hour (60 steps): is its mean demand within 10 % of the hours before and after?"""
    means = [statistics.fmean(demand[h : h + 60]) for h in range(0, len(demand) - 59, 60)]

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= 0.1 * max(a, b) or max(a, b) == 0

    return [
        0 < h < len(means) - 1 and close(means[h], means[h - 1]) and close(means[h], means[h + 1])
        for h in range(len(means))
    ]


POLICIES = ("autarky", "hpa-like", "fixed", "oracle")


@dataclass
class TraceResult:
    trace: Trace
    unit: float
    steady: int  # steady hours
    results: dict[str, Result]


def simulate_trace(trace: Trace, settings: Settings, policy: ScalingPolicy | None = None) -> TraceResult:
    policy = policy or ScalingPolicy(max_capacity=MAX_UNITS)
    demand, unit, startup = trace.demand, unit_size(trace.demand, settings), settings.startup_minutes
    approvals = Result()  # filled in by the decider
    autarky = replay(demand, unit, startup, autarky_decider(policy, approvals))
    autarky.approvals = approvals.approvals
    results = {
        "autarky": autarky,
        "hpa-like": replay(demand, unit, startup, hpa_decider(settings)),
        "fixed": simulate_fixed(demand, unit, settings),
        "oracle": simulate_oracle(demand, unit, startup),
    }
    steady = steady_hours(demand)
    for r in results.values():
        r.steady_actions = sum(1 for k in r.action_steps if k // 60 < len(steady) and steady[k // 60])
        r.action_steps = []
    return TraceResult(trace, unit, sum(steady), results)


# ------------------------------------------------------------------------------------------ output
def totals(per_trace: Sequence[TraceResult]) -> dict[str, Result]:
    total = {name: Result() for name in POLICIES}
    for tr in per_trace:
        for name in POLICIES:
            total[name] += tr.results[name]
    return total


def per_hour(count: int, minutes: int) -> float:
    return 60 * count / minutes if minutes else 0.0


def duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


@dataclass(frozen=True)
class Goal:
    text: str
    met: bool | None  # None: cannot be judged on these traces


def goals(per_trace: Sequence[TraceResult]) -> list[Goal]:
    """The issue's goals for autarky, over all traces together."""
    total = totals(per_trace)
    a, h, o = total["autarky"], total["hpa-like"], total["oracle"]
    steady_minutes = 60 * sum(tr.steady for tr in per_trace)
    steady_rate = per_hour(a.steady_actions, steady_minutes)
    cost = a.instance_minutes / o.instance_minutes
    return [
        Goal(
            f"fewer violation minutes than the HPA-like baseline: {a.violation_minutes} "
            f"vs {h.violation_minutes}",
            a.violation_minutes < h.violation_minutes,
        ),
        Goal(f"cost at most 110 % of the oracle's: {100 * cost:.1f} %", cost <= 1.1),
        Goal(
            f"at most 1 scaling action per hour on steady load: {steady_rate:.2f} per steady hour "
            f"({steady_minutes // 60} steady hours)"
            if steady_minutes
            else "at most 1 scaling action per hour on steady load: no steady hour in these traces",
            steady_rate <= 1 if steady_minutes else None,
        ),
    ]


def short_name(name: str, per_trace: Sequence[TraceResult]) -> str:
    """The file's stem when no other trace shares it, else the name as given."""
    stem = Path(name).stem
    return stem if sum(1 for tr in per_trace if Path(tr.trace.name).stem == stem) == 1 else name


def print_report(per_trace: Sequence[TraceResult], settings: Settings, policy: ScalingPolicy) -> list[Goal]:
    minutes = sum(tr.trace.minutes for tr in per_trace)
    steady_minutes = 60 * sum(tr.steady for tr in per_trace)
    total = totals(per_trace)
    oracle = total["oracle"].instance_minutes
    print(f"Scaling policies replayed on {len(per_trace)} trace(s), {minutes} simulated minutes")
    print(
        f"  clock: 1-minute steps, each row's demand held until the next row; unit: serves 1/"
        f"{settings.units_at_p99:g} of the trace's 99th-percentile demand (column 'unit'), at least 1 unit"
    )
    print(
        f"  start-up: {settings.startup_minutes} min from request to serving, paid from the request; removal "
        f"immediate; utilisation = demand / capacity in service"
    )
    print(
        f"  autarky: ScalingPolicy up > {policy.scale_up_utilisation:g} (+1..{policy.max_step_up}), down < "
        f"{policy.scale_down_utilisation:g} (-{policy.step_down}), cooldown {duration(policy.cooldown)}, "
        f"stabilisation {duration(policy.stabilisation_window)}"
    )
    print(
        f"  hpa-like: target {settings.hpa_target:g}, tolerance {settings.hpa_tolerance:g}, "
        f"{settings.hpa_window_minutes}-min scale-down stabilisation; fixed: covers the "
        f"{100 * settings.fixed_quantile:g}th percentile; oracle: knows the future, starts units in time"
    )
    print()
    head = (
        f"{'total':<9} {'violation min':>13} {'instance-min':>13} {'cost/oracle':>11} {'actions':>8} "
        f"{'actions/h':>9} {'per steady h':>12} {'approvals':>9}"
    )
    print(head)
    print("-" * len(head))
    for name in POLICIES:
        r = total[name]
        approvals = str(r.approvals) if name == "autarky" else ""
        print(
            f"{name:<9} {r.violation_minutes:>13} {r.instance_minutes:>13} "
            f"{100 * r.instance_minutes / oracle:>9.1f} % {r.actions:>8} "
            f"{per_hour(r.actions, minutes):>9.2f} {per_hour(r.steady_actions, steady_minutes):>12.2f} "
            f"{approvals:>9}"
        )
    print(
        "  per steady h: actions in steady hours (mean demand within 10 % of the hours before and after)\n"
        "  approvals: autarky's changes that approval_needed holds for a person (beyond the blast radius);"
        " granted at once here"
    )
    print()
    print("per trace (A autarky, H hpa-like, F fixed, O oracle; cost in % of the oracle's):")
    names = [short_name(tr.trace.name, per_trace) for tr in per_trace]
    width = max(len("trace"), *map(len, names))
    head = (
        f"{'trace':<{width}} {'unit':>8} {'hours':>5} {'steady':>6} | {'viol A':>6} {'H':>6} {'F':>6} | "
        f"{'cost A':>6} {'H':>4} {'F':>4} | {'act/h A':>7} {'H':>5} {'O':>5} | {'steady A':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, tr in zip(names, per_trace, strict=True):
        a, h, f, o = (tr.results[n] for n in POLICIES)
        m, base = tr.trace.minutes, o.instance_minutes
        steady = f"{per_hour(a.steady_actions, 60 * tr.steady):>8.2f}" if tr.steady else f"{'':>8}"
        print(
            f"{name:<{width}} {tr.unit:>8.3g} {m / 60:>5.0f} {tr.steady:>6} | "
            f"{a.violation_minutes:>6} {h.violation_minutes:>6} {f.violation_minutes:>6} | "
            f"{100 * a.instance_minutes / base:>6.0f} {100 * h.instance_minutes / base:>4.0f} "
            f"{100 * f.instance_minutes / base:>4.0f} | {per_hour(a.actions, m):>7.2f} "
            f"{per_hour(h.actions, m):>5.2f} {per_hour(o.actions, m):>5.2f} | {steady}"
        )
    print(
        "  unit: demand one unit serves; hours, steady: simulated and steady hours; steady A: per steady hour"
    )
    fewer = sum(
        1
        for tr in per_trace
        if tr.results["autarky"].violation_minutes < tr.results["hpa-like"].violation_minutes
    )
    cheaper = sum(
        1
        for tr in per_trace
        if tr.results["autarky"].instance_minutes < tr.results["hpa-like"].instance_minutes
    )
    print(
        f"autarky vs hpa-like per trace: fewer violation minutes on {fewer} of {len(per_trace)}, "
        f"cheaper on {cheaper} of {len(per_trace)}"
    )
    result = goals(per_trace)
    print()
    print("goals (autarky, all traces together):")
    for goal in result:
        mark = "n/a    " if goal.met is None else "met    " if goal.met else "NOT met"
        print(f"  {mark}  {goal.text}")
    return result


def parse_policy(overrides: Sequence[str]) -> ScalingPolicy:
    """ScalingPolicy's defaults (without an upper bound) with FIELD=VALUE overrides."""
    fields: dict[str, str | int] = {"max_capacity": MAX_UNITS}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in ScalingPolicy.model_fields:
            known = ", ".join(ScalingPolicy.model_fields)
            raise ValueError(f"{item!r} is not FIELD=VALUE with a field of ScalingPolicy ({known})")
        fields[name.strip()] = value.strip()
    try:
        policy = ScalingPolicy.model_validate(fields)
    except ValidationError as e:
        problems = "; ".join(
            ": ".join(filter(None, [".".join(map(str, err["loc"])), err["msg"]])) for err in e.errors()
        )
        raise ValueError(problems) from None
    if policy.min_capacity < 1:
        raise ValueError("min_capacity: the simulation keeps at least 1 unit (utilisation needs capacity)")
    return policy


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, action="append", help="a timestamp,value CSV (repeatable)")
    parser.add_argument("--data", type=Path, default=NAB_DATA, help="NAB data directory for the default set")
    parser.add_argument("--units-at-p99", type=float, default=Settings.units_at_p99, help="units per p99")
    parser.add_argument(
        "--startup", type=int, default=Settings.startup_minutes, help="minutes to start a unit"
    )
    parser.add_argument(
        "--hpa-target", type=float, default=Settings.hpa_target, help="HPA's target utilisation"
    )
    parser.add_argument("--fixed-quantile", type=float, default=Settings.fixed_quantile)
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a ScalingPolicy default, e.g. scale_up_utilisation=0.8 or stabilisation_window=5m",
    )
    args = parser.parse_args(argv)
    if args.units_at_p99 <= 0 or args.startup < 0 or not 0 < args.hpa_target <= 1:
        parser.error("--units-at-p99 must be > 0, --startup >= 0 and --hpa-target in (0, 1]")
    if not 0 <= args.fixed_quantile <= 1:
        parser.error("--fixed-quantile must be within [0, 1]")
    try:
        policy = parse_policy(args.policy)
    except ValueError as e:
        print(f"error: --policy: {e}", file=sys.stderr)
        return 2
    settings = Settings(
        units_at_p99=args.units_at_p99,
        startup_minutes=args.startup,
        hpa_target=args.hpa_target,
        fixed_quantile=args.fixed_quantile,
    )
    if args.trace:
        paths = [(p, str(p)) for p in args.trace]
    else:
        found = default_traces(args.data)
        if not found:
            print(
                f"error: no load traces under {args.data} ({', '.join(DEFAULT_TRACES)}); get NAB "
                f"(git clone https://github.com/numenta/NAB) and pass --data NAB/data, or --trace FILE",
                file=sys.stderr,
            )
            return 2
        paths = [(p, p.relative_to(args.data).as_posix()) for p in found]
    try:
        traces = [load_trace(p, name) for p, name in paths]
    except TraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    per_trace = [simulate_trace(t, settings, policy) for t in traces]
    print_report(per_trace, settings, policy)
    print(f"simulated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
