"""Replay load traces through the scaling policy in simulation, next to HPA-like, fixed and an oracle.

    .venv/bin/python bench/scaling.py [--trace FILE ...] [--data DIR] [--startup MIN ...]
        [--hpa-target U ...] [--approval-minutes MIN] [--units-at-p99 N] [--fixed-quantile Q]
        [--policy FIELD=VALUE ...] [--workers N]

A trace is any CSV with the columns `timestamp,value` (ISO 8601 or Unix seconds; the value is the demand
in any unit: requests, CPU, bytes). Without --trace, the load-like NAB series under DIR
(../shared/data/nab/data) are replayed: the AWS CloudWatch machine metrics (CPU, ELB requests, network,
disk), the tweet volumes and the artificial series without anomalies (a flat and a noisy steady load,
daily cycles). Not replayed by default, as they are not a service's load: ad prices, road speeds and
travel times, the artificial series with anomalies (one goes negative). --policy overrides a default of
ScalingPolicy (e.g. `--policy scale_down_target=0.9 --policy stabilisation_window=10m`).

Each start-up delay (--startup, repeatable; default 1 and 3 minutes) is a separate replay and report: the
totals (autarky, HPA-like at each --hpa-target: its cost/violation curve, fixed, oracle), the per-trace
table and the issue's goals for that delay. The simulation (bench/scaling_sim.py, the same for every
policy and trace):
- Clock: 1-minute steps. Each row's value is the demand from its timestamp until the next row's (held);
  a minute covered by several rows takes the highest. Rows stay in file order: a row whose successor is
  not later lasts the trace's median interval, as does the last row; gaps are held.
- Capacity: demand is served in units; a unit serves 1/N of the trace's 99th-percentile demand (N =
  --units-at-p99, default 10), so every trace needs several units and a spike above the 99th percentile
  needs more. At least 1 unit, no upper bound (the policies run with max_capacity = 10,000).
- Each minute the monitor sees utilisation = demand / (units in service × unit size), unbounded above 1
  (like requests per target, not a CPU that saturates), and the policy returns the desired count.
  Units asked for start serving --startup minutes later; they are paid from the request (starting units
  are part of the desired count, as an ASG's desired vs in service). Removing units is immediate
  (starting ones first). Every policy starts at what the first minute needs.
- Violation minute: a minute whose demand exceeds the capacity in service. Cost: instance-minutes paid
  (in service + starting). Action: a change of the desired count.
- autarky: autarky.scaling.policy.recommend with ScalingPolicy's defaults and its warm-up set to the
  start-up delay (as a real resource is configured; unless --policy warmup=... says otherwise). A change
  approval_needed flags applies the part that needs no person at once and waits --approval-minutes
  (default 30) for the rest, which then applies if the policy still asks for it (what it asks for then,
  at most what was asked); the approvals and the minutes they waited are counted.
- hpa-like: desired = ceil(in service × utilisation / target) when |utilisation / target - 1| > 0.1, else
  unchanged; a decrease goes only to the highest recommendation of the last 5 minutes (scale-down
  stabilisation); no rate limit on scaling up.
- fixed: the units that cover the trace's 95th-percentile demand (--fixed-quantile), all the time.
- oracle: knows the future. Serving minute t takes ceil(demand(t) / unit) units, started --startup
  minutes before; the least it can pay without a violation is the most any minute of [t, t + startup]
  needs. Its cost is the floor (100 %); cost/oracle is each policy's instance-minutes over it.
- Steady load: an hour (60 steps from the trace's start) is steady when its mean demand is within 10 % of
  the hours before and after it; actions in steady hours per steady hour measure flapping.

The goals (issue 28), per start-up delay, over all traces together: (a) fewer violation minutes than
HPA-like at equal or lower cost: HPA-like's violation minutes interpolated linearly on its cost curve at
autarky's cost (between the two neighbouring targets); (b) cost at most 115 % of the oracle's; (c) at most
1 action per steady hour. ScalingPolicy's defaults are chosen by bench/scaling_choose.py
(leave-one-trace-out). From Python: bench.scaling_sim.simulate_trace.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `autarky` package importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import ValidationError

from autarky.scaling.policy_types import ScalingPolicy
from bench.load_traces import DEFAULT_TRACES, NAB_DATA, Trace, TraceError, default_traces, load_trace
from bench.scaling_sim import (  # simulate_trace: this script's Python entry point
    HPA_TARGETS,
    MAX_UNITS,
    Result,
    Settings,
    TraceResult,
    at_cost,
    hpa_name,
    policy_for,
    simulate_trace,
)

COST_LIMIT = 1.15  # goal (b): at most 115 % of the oracle's cost
STEADY_LIMIT = 1.0  # goal (c): at most 1 action per steady hour
STARTUPS = (1, 3)


# ------------------------------------------------------------------------------------------ running
def run(
    traces: Sequence[Trace],
    settings: Sequence[Settings],
    policies: Sequence[ScalingPolicy],
    workers: int = 2,
) -> list[list[TraceResult]]:
    """Every trace under each (settings, policy) pair; per pair, the results in trace order. With more
    than one worker the (trace, pair) replays run in a process pool, longest traces first."""
    tasks = [(i, j) for j in range(len(settings)) for i in range(len(traces))]
    tasks.sort(key=lambda task: -traces[task[0]].minutes)
    args = ([traces[i] for i, _ in tasks], [settings[j] for _, j in tasks], [policies[j] for _, j in tasks])
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            done = list(pool.map(simulate_trace, *args))
    else:
        done = list(map(simulate_trace, *args))
    out: list[list[TraceResult]] = [[None] * len(traces) for _ in settings]  # type: ignore[list-item]
    for (i, j), result in zip(tasks, done, strict=True):
        out[j][i] = result
    return out


# ------------------------------------------------------------------------------------------ judging
def totals(per_trace: Sequence[TraceResult]) -> dict[str, Result]:
    total: dict[str, Result] = {}
    for tr in per_trace:
        for name, r in tr.results.items():
            total.setdefault(name, Result()).__iadd__(r)
    return total


def per_hour(count: int, minutes: int) -> float:
    return 60 * count / minutes if minutes else 0.0


@dataclass(frozen=True)
class Summary:
    """Autarky over some traces at one start-up delay, and what the goals compare it with."""

    violation_minutes: int
    cost: float  # instance-minutes over the oracle's
    steady_rate: float | None  # actions per steady hour; None without a steady hour
    steady_hours: int
    hpa_at_cost: float  # HPA-like's violation minutes at autarky's cost (interpolated)
    hpa_bracket: str  # which HPA-like targets the interpolation lies between

    @property
    def feasible(self) -> bool:
        """Goals (b) and (c)."""
        return self.cost <= COST_LIMIT + 1e-12 and (
            self.steady_rate is None or self.steady_rate <= STEADY_LIMIT
        )


def bracket(points: Sequence[tuple[float, float, float]], cost: float) -> str:
    """Where `cost` lies on HPA-like's curve of (cost, violations, target) points."""
    ordered = sorted(points)
    if cost <= ordered[0][0]:
        return f"HPA-like's cheapest point (target {ordered[0][2]:g}) costs {100 * ordered[0][0]:.1f} %"
    if cost >= ordered[-1][0]:
        return f"above HPA-like's dearest point (target {ordered[-1][2]:g}, {100 * ordered[-1][0]:.1f} %)"
    for low, high in itertools.pairwise(ordered):
        if low[0] <= cost <= high[0]:
            return (
                f"between targets {low[2]:g} ({100 * low[0]:.1f} %, {low[1]:.0f}) and "
                f"{high[2]:g} ({100 * high[0]:.1f} %, {high[1]:.0f})"
            )
    return ""


def summarise(per_trace: Sequence[TraceResult], targets: Sequence[float]) -> Summary:
    total = totals(per_trace)
    oracle = total["oracle"].instance_minutes or 1
    a = total["autarky"]
    steady = sum(tr.steady for tr in per_trace)
    points = [
        (total[hpa_name(t)].instance_minutes / oracle, float(total[hpa_name(t)].violation_minutes), t)
        for t in targets
    ]
    cost = a.instance_minutes / oracle
    return Summary(
        violation_minutes=a.violation_minutes,
        cost=cost,
        steady_rate=per_hour(a.steady_actions, 60 * steady) if steady else None,
        steady_hours=steady,
        hpa_at_cost=at_cost([(c, v) for c, v, _ in points], cost),
        hpa_bracket=bracket(points, cost),
    )


@dataclass(frozen=True)
class Goal:
    text: str
    met: bool | None  # None: cannot be judged on these traces


def goals(summary: Summary) -> list[Goal]:
    s = summary
    steady = (
        f"(c) at most {STEADY_LIMIT:g} action per steady hour: {s.steady_rate:.2f} "
        f"({s.steady_hours} steady hours)"
        if s.steady_rate is not None
        else "(c) at most 1 action per steady hour: no steady hour in these traces"
    )
    return [
        Goal(
            f"(a) fewer violation minutes than HPA-like at equal or lower cost: {s.violation_minutes} at "
            f"{100 * s.cost:.1f} % vs HPA-like {s.hpa_at_cost:.0f} at {100 * s.cost:.1f} % ({s.hpa_bracket})",
            s.violation_minutes < s.hpa_at_cost,
        ),
        Goal(
            f"(b) cost at most {100 * COST_LIMIT:.0f} % of the oracle's: {100 * s.cost:.1f} %",
            s.cost <= COST_LIMIT,
        ),
        Goal(steady, None if s.steady_rate is None else s.steady_rate <= STEADY_LIMIT),
    ]


# ------------------------------------------------------------------------------------------ output
def short_name(name: str, names: Sequence[str]) -> str:
    """The file's stem when no other trace shares it, else the name as given."""
    stem = Path(name).stem
    return stem if sum(1 for n in names if Path(n).stem == stem) == 1 else name


def mark(met: bool | None) -> str:
    return "n/a    " if met is None else "met    " if met else "NOT met"


def print_header(settings: Settings, policy: ScalingPolicy, traces: Sequence[Trace]) -> None:
    minutes = sum(t.minutes for t in traces)
    p = policy
    print(f"Scaling policies replayed on {len(traces)} trace(s), {minutes} simulated minutes each")
    print(
        f"  clock: 1-minute steps, each row's demand held until the next row; unit: serves 1/"
        f"{settings.units_at_p99:g} of the trace's 99th-percentile demand (column 'unit'), at least 1 unit"
    )
    print("  start-up: paid from the request; removal immediate; utilisation = demand / capacity in service")
    print(
        f"  autarky: ScalingPolicy target {p.target_utilisation:g}, scale-down target "
        f"{p.scale_down_target:g}, "
        f"stabilisation {p.stabilisation_window}, headroom quantile {p.headroom_quantile:g} of rises over "
        f"{p.rise_history}, blast radius {p.blast_radius:.0%} or {p.blast_radius_units} units, "
        f"cooldown {p.cooldown}; warm-up = start-up delay"
    )
    print(
        f"  approvals: a change approval_needed flags waits {settings.approval_minutes} min for a person "
        f"(what needs none applies at once)"
    )
    targets = " ".join(f"{t:g}" for t in settings.hpa_targets)
    print(
        f"  hpa-like@U: target U ({targets}), tolerance {settings.hpa_tolerance:g}, "
        f"{settings.hpa_window_minutes}-min scale-down stabilisation; fixed: covers the "
        f"{100 * settings.fixed_quantile:g}th percentile; oracle: knows the future, starts units in time"
    )


def print_startup(per_trace: Sequence[TraceResult], settings: Settings, policy: ScalingPolicy) -> list[Goal]:
    """The totals, the per-trace table and the goals at one start-up delay."""
    minutes = sum(tr.trace.minutes for tr in per_trace)
    steady_minutes = 60 * sum(tr.steady for tr in per_trace)
    total = totals(per_trace)
    oracle = total["oracle"].instance_minutes or 1
    print()
    print(f"== start-up {settings.startup_minutes} min (autarky's warm-up {policy.warmup}) ==")
    head = (
        f"{'total':<14} {'violation min':>13} {'instance-min':>13} {'cost/oracle':>11} {'actions':>8} "
        f"{'actions/h':>9} {'per steady h':>12} {'approvals':>9} {'waited min':>10}"
    )
    print(head)
    print("-" * len(head))
    for name, r in total.items():
        extra = f"{r.approvals:>9} {r.approval_wait:>10}" if name == "autarky" else ""
        print(
            f"{name:<14} {r.violation_minutes:>13} {r.instance_minutes:>13} "
            f"{100 * r.instance_minutes / oracle:>9.1f} % {r.actions:>8} "
            f"{per_hour(r.actions, minutes):>9.2f} "
            f"{per_hour(r.steady_actions, steady_minutes):>12.2f} {extra}"
        )
    print(
        "  per steady h: actions in steady hours (mean demand within 10 % of the hours before and after);\n"
        "  approvals, waited min: autarky's changes that approval_needed holds for a person, minutes held"
    )
    print()
    ref = min(settings.hpa_targets, key=lambda t: abs(t - 0.7))
    print(
        f"per trace (A autarky, H= HPA-like interpolated at A's cost, H{ref:g} HPA-like@{ref:g}, F fixed, "
        f"O oracle; cost in % of the oracle's):"
    )
    names = [tr.trace.name for tr in per_trace]
    shown = [short_name(n, names) for n in names]
    width = max(len("trace"), *map(len, shown))
    head = (
        f"{'trace':<{width}} {'unit':>8} {'hours':>5} {'steady':>6} | {'viol A':>6} {'H=':>7} "
        f"{'H' + format(ref, 'g'):>6} {'F':>6} | {'cost A':>6} {'H' + format(ref, 'g'):>6} {'F':>4} | "
        f"{'act/h A':>7} {'O':>5} | {'steady A':>8} {'appr A':>6}"
    )
    print(head)
    print("-" * len(head))
    fewer = 0
    for name, tr in zip(shown, per_trace, strict=True):
        a, h, f, o = (tr.results[n] for n in ("autarky", hpa_name(ref), "fixed", "oracle"))
        m, base = tr.trace.minutes, o.instance_minutes or 1
        h_eq = at_cost(tr.hpa_curve(), a.instance_minutes)
        fewer += a.violation_minutes < h_eq
        steady = f"{per_hour(a.steady_actions, 60 * tr.steady):>8.2f}" if tr.steady else f"{'':>8}"
        print(
            f"{name:<{width}} {tr.unit:>8.3g} {m / 60:>5.0f} {tr.steady:>6} | "
            f"{a.violation_minutes:>6} {h_eq:>7.0f} {h.violation_minutes:>6} {f.violation_minutes:>6} | "
            f"{100 * a.instance_minutes / base:>6.0f} {100 * h.instance_minutes / base:>6.0f} "
            f"{100 * f.instance_minutes / base:>4.0f} | {per_hour(a.actions, m):>7.2f} "
            f"{per_hour(o.actions, m):>5.2f} | {steady} {a.approvals:>6}"
        )
    print(
        "  unit: demand one unit serves; hours, steady: simulated and steady hours; steady A: per steady hour"
    )
    print(
        f"autarky vs HPA-like at equal cost per trace: fewer violation minutes on {fewer} of {len(per_trace)}"
    )
    result = goals(summarise(per_trace, settings.hpa_targets))
    print()
    print(f"goals at start-up {settings.startup_minutes} min (autarky, all traces together):")
    for goal in result:
        print(f"  {mark(goal.met)}  {goal.text}")
    return result


# ------------------------------------------------------------------------------------------ CLI
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


def warmup_given(overrides: Sequence[str]) -> bool:
    return any(item.partition("=")[0].strip() == "warmup" for item in overrides)


def load_traces(paths: Sequence[Path] | None, data: Path) -> list[Trace]:
    """The traces given, else the default NAB set under `data`; TraceError names the file."""
    if paths:
        return [load_trace(p, str(p)) for p in paths]
    found = default_traces(data)
    if not found:
        raise TraceError(
            f"no load traces under {data} ({', '.join(DEFAULT_TRACES)}); get NAB "
            f"(git clone https://github.com/numenta/NAB) and pass --data NAB/data, or --trace FILE"
        )
    return [load_trace(p, p.relative_to(data).as_posix()) for p in found]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options bench/scaling.py and bench/scaling_choose.py share."""
    parser.add_argument("--trace", type=Path, action="append", help="a timestamp,value CSV (repeatable)")
    parser.add_argument("--data", type=Path, default=NAB_DATA, help="NAB data directory for the default set")
    parser.add_argument(
        "--startup", type=int, action="append", help="minutes to start a unit (repeatable; default 1 and 3)"
    )
    parser.add_argument(
        "--hpa-target", type=float, action="append", help="HPA-like's target utilisation (repeatable)"
    )
    parser.add_argument("--units-at-p99", type=float, default=Settings.units_at_p99, help="units per p99")
    parser.add_argument("--fixed-quantile", type=float, default=Settings.fixed_quantile)
    parser.add_argument(
        "--approval-minutes",
        type=int,
        default=Settings.approval_minutes,
        help="how long a change that needs a person waits",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes replaying traces (1: none)")


def settings_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Settings]:
    """One Settings per start-up delay; argparse errors for values out of range."""
    startups = args.startup or list(STARTUPS)
    targets = tuple(args.hpa_target or HPA_TARGETS)
    if args.units_at_p99 <= 0 or min(startups) < 0 or not all(0 < t <= 1 for t in targets):
        parser.error("--units-at-p99 must be > 0, --startup >= 0 and each --hpa-target in (0, 1]")
    if not 0 <= args.fixed_quantile <= 1:
        parser.error("--fixed-quantile must be within [0, 1]")
    if args.approval_minutes < 0 or args.workers < 1:
        parser.error("--approval-minutes must be >= 0 and --workers >= 1")
    base = Settings(
        units_at_p99=args.units_at_p99,
        hpa_targets=tuple(sorted(set(targets))),
        fixed_quantile=args.fixed_quantile,
        approval_minutes=args.approval_minutes,
    )
    return [replace(base, startup_minutes=s) for s in dict.fromkeys(startups)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a ScalingPolicy default, e.g. scale_down_target=0.9 or stabilisation_window=10m",
    )
    args = parser.parse_args(argv)
    all_settings = settings_from(parser, args)
    try:
        policy = parse_policy(args.policy)
    except ValueError as e:
        print(f"error: --policy: {e}", file=sys.stderr)
        return 2
    try:
        traces = load_traces(args.trace, args.data)
    except TraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    keep = warmup_given(args.policy)
    policies = [policy if keep else policy_for(policy, s.startup_minutes) for s in all_settings]
    started = time.perf_counter()
    results = run(traces, all_settings, policies, args.workers)
    print_header(all_settings[0], policy, traces)
    judged = [
        (s, print_startup(per_trace, s, p))
        for s, per_trace, p in zip(all_settings, results, policies, strict=True)
    ]
    print()
    print("goals, all start-up delays:")
    for s, result in judged:
        for goal in result:
            print(f"  {s.startup_minutes} min  {mark(goal.met)}  {goal.text}")
    print(f"simulated in {time.perf_counter() - started:.1f} s ({args.workers} worker(s))", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
