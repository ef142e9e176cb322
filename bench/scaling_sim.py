"""The simulation behind bench/scaling.py and bench/scaling_choose.py: one trace replayed minute by minute
through Autarky's scaling policy (with approvals that take time), HPA-like at several targets, a fixed
capacity and an oracle. No output here; bench/scaling.py describes the model in its docstring.

From Python: `simulate_trace(load_trace(path), Settings(startup_minutes=1), policy_for(ScalingPolicy(), 1))`.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from autarky.scaling.policy import approval_needed, recommend, record_event
from autarky.scaling.policy_types import Capacity, LoadSample, ScalingMemory, ScalingPolicy
from bench.load_traces import Trace

MAX_UNITS = 10_000
EPSILON = 1e-9
HPA_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class Settings:
    units_at_p99: float = 10.0  # a unit serves this share of the trace's 99th-percentile demand
    startup_minutes: int = 3
    hpa_targets: tuple[float, ...] = HPA_TARGETS
    hpa_tolerance: float = 0.1
    hpa_window_minutes: int = 5
    fixed_quantile: float = 0.95
    approval_minutes: int = 30  # how long a change approval_needed flags waits for a person


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
    steady_actions: int = 0
    approvals: int = 0  # changes approval_needed flagged (autarky only)
    approval_wait: int = 0  # minutes those changes waited (until granted or no longer asked for)
    action_steps: list[int] = field(default_factory=list, repr=False)

    def __iadd__(self, other: Result) -> Result:
        self.violation_minutes += other.violation_minutes
        self.instance_minutes += other.instance_minutes
        self.actions += other.actions
        self.steady_actions += other.steady_actions
        self.approvals += other.approvals
        self.approval_wait += other.approval_wait
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


def policy_for(policy: ScalingPolicy, startup_minutes: int) -> ScalingPolicy:
    """The policy as a resource with this start-up delay would be configured: warm-up = start-up."""
    return policy.model_copy(update={"warmup": timedelta(minutes=startup_minutes)})


def without_approval(policy: ScalingPolicy, current: int, target: int) -> int:
    """The furthest step from `current` towards `target` that needs no person."""
    step = 1 if target > current else -1
    best = current
    for candidate in range(current + step, target + step, step):
        if approval_needed(policy, current, candidate) is None:
            best = candidate
    return best


def autarky_decider(policy: ScalingPolicy, result: Result, approval_minutes: int) -> Decide:
    """recommend() each minute; a change approval_needed flags applies what needs no person at once and
    the rest after `approval_minutes`, if the policy still asks for it then."""
    memory = ScalingMemory()
    start = datetime(2000, 1, 1)
    minute = timedelta(minutes=1)
    held: list[int] = []  # [asked at step, target] of the change waiting for a person

    def decide(k: int, desired: int, in_service: int, utilisation: float) -> int:
        at = start + k * minute
        sample = LoadSample.model_construct(
            at=at, utilisation=utilisation, backlog=None, backlog_age_seconds=None, demand=None
        )
        capacity = Capacity.model_construct(desired=desired, in_service=in_service)
        new = recommend(policy, capacity, sample, memory).desired
        if held:
            asked, target = held
            growing = target > desired
            if (new > desired) if growing else (new < desired):  # still asked for
                if k - asked < approval_minutes:
                    return desired  # the person has not answered yet
                new = min(new, target) if growing else max(new, target)
            held.clear()
            result.approval_wait += k - asked
        elif new != desired and approval_needed(policy, desired, new):
            result.approvals += 1
            if approval_minutes > 0:
                held[:] = [k, new]
                new = without_approval(policy, desired, new)
        if new != desired:
            record_event(memory, at)
        return new

    return decide


def hpa_decider(settings: Settings, target: float) -> Decide:
    window: deque[tuple[int, int]] = deque()  # (step, recommendation)
    tolerance, span = settings.hpa_tolerance, settings.hpa_window_minutes

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


def count_steady(result: Result, steady: Sequence[bool]) -> Result:
    result.steady_actions = sum(1 for k in result.action_steps if k // 60 < len(steady) and steady[k // 60])
    result.action_steps = []  # not needed any more; keeps results small between processes
    return result


def hpa_name(target: float) -> str:
    return f"hpa-like@{target:g}"


def simulate_autarky(trace: Trace, settings: Settings, policy: ScalingPolicy) -> Result:
    demand, unit = trace.demand, unit_size(trace.demand, settings)
    result = Result()
    decide = autarky_decider(policy, result, settings.approval_minutes)
    replayed = replay(demand, unit, settings.startup_minutes, decide)
    replayed.approvals, replayed.approval_wait = result.approvals, result.approval_wait
    return count_steady(replayed, steady_hours(demand))


def simulate_baselines(trace: Trace, settings: Settings) -> dict[str, Result]:
    """HPA-like at each of settings.hpa_targets, fixed and oracle."""
    demand, unit, startup = trace.demand, unit_size(trace.demand, settings), settings.startup_minutes
    steady = steady_hours(demand)
    results = {
        hpa_name(t): replay(demand, unit, startup, hpa_decider(settings, t)) for t in settings.hpa_targets
    }
    results["fixed"] = simulate_fixed(demand, unit, settings)
    results["oracle"] = simulate_oracle(demand, unit, startup)
    return {name: count_steady(r, steady) for name, r in results.items()}


@dataclass
class TraceResult:
    trace: Trace
    unit: float
    steady: int  # steady hours
    results: dict[str, Result]  # "autarky", "hpa-like@<target>" per target, "fixed", "oracle"

    def hpa_curve(self) -> list[tuple[int, int]]:
        """(instance-minutes, violation minutes) of HPA-like at each target."""
        return [
            (r.instance_minutes, r.violation_minutes) for n, r in self.results.items() if n.startswith("hpa")
        ]


def simulate_trace(trace: Trace, settings: Settings, policy: ScalingPolicy | None = None) -> TraceResult:
    """Every policy over one trace; `policy` runs as given (see policy_for for its warm-up)."""
    if policy is None:
        policy = policy_for(ScalingPolicy(max_capacity=MAX_UNITS), settings.startup_minutes)
    results = {"autarky": simulate_autarky(trace, settings, policy), **simulate_baselines(trace, settings)}
    return TraceResult(trace, unit_size(trace.demand, settings), sum(steady_hours(trace.demand)), results)


def at_cost(curve: Sequence[tuple[float, float]], cost: float) -> float:
    """A cost/violation curve's violations at `cost`: linear between the two neighbouring points; beyond
    its ends, the nearest end (the least violating point, when `cost` is above every point's)."""
    points = sorted(curve)
    if cost <= points[0][0]:
        return points[0][1]
    if cost >= points[-1][0]:
        return min(v for _, v in points)
    for (c0, v0), (c1, v1) in itertools.pairwise(points):
        if c0 <= cost <= c1:
            return v0 if c1 == c0 else v0 + (v1 - v0) * (cost - c0) / (c1 - c0)
    raise AssertionError("unreachable: cost lies between the curve's ends")
