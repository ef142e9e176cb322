"""Choose ScalingPolicy's defaults leave-one-trace-out, and print the choice.

    .venv/bin/python bench/scaling_choose.py                 # the default NAB traces, the full grid
    .venv/bin/python bench/scaling_choose.py --grid quick    # 2 configs (a smoke test, seconds)
    .venv/bin/python bench/scaling_choose.py --trace a.csv --trace b.csv --trace c.csv
    make bench-scaling-choose                                # the same as the first line

What it does, for newcomers:
1. Every trace (the load-like NAB series under --data, or each --trace FILE: a `timestamp,value` CSV) is
   replayed once per grid config and start-up delay (1 and 3 minutes; --startup to change) through the
   simulation of bench/scaling.py (bench/scaling_sim.py), with the policy's warm-up set to the start-up
   delay; HPA-like at each --hpa-target, fixed and the oracle once per trace and delay. Results are kept in
   memory, so each replay runs once; 2 processes share the work (--workers). The full grid on the 32
   default traces is 1,216 replays: 15-20 minutes on 2 cores (progress on stderr).
2. The grid: scale_down_target {0.8, 0.85, 0.9} × stabilisation_window {6, 10, 15 min} ×
   headroom_quantile {0.5, 0.7}, with target_utilisation 1.0 and rise_history 1 h fixed (18 configs).
3. The objective on a set of training traces: among the configs whose cost is at most 115 % of the
   oracle's and that take at most 1 action per steady hour at every start-up delay (goals b and c of
   issue 28), the one with the fewest violation minutes summed over both delays. If none is feasible: the
   least violating one within 115 % (said so in column 'how'); if none is within 115 %: the cheapest.
4. For each trace left out, the config chosen on all the others, and its results on the left-out trace
   next to HPA-like interpolated at equal cost on that trace's own cost/violation curve. Then the totals
   over the left-out traces with the goals judged on them: that is how the chosen defaults do on load
   they were not chosen on. Last, the choice on all traces, and whether it equals ScalingPolicy's shipped
   defaults (autarky/scaling/policy_types.py): if not, change them there (or explain why not).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `autarky` package importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autarky.scaling.policy_types import ScalingPolicy
from bench.load_traces import Trace, TraceError
from bench.scaling import (
    Summary,
    add_common_arguments,
    goals,
    load_traces,
    mark,
    settings_from,
    short_name,
    summarise,
)
from bench.scaling_sim import (
    MAX_UNITS,
    Result,
    Settings,
    TraceResult,
    at_cost,
    policy_for,
    simulate_autarky,
    simulate_baselines,
    steady_hours,
    unit_size,
)


@dataclass(frozen=True)
class Config:
    scale_down_target: float
    stabilisation_minutes: int
    headroom_quantile: float

    def __str__(self) -> str:
        return (
            f"down={self.scale_down_target:g},window={self.stabilisation_minutes}m,"
            f"quantile={self.headroom_quantile:g}"
        )

    def policy(self, startup_minutes: int) -> ScalingPolicy:
        base = ScalingPolicy(
            max_capacity=MAX_UNITS,
            target_utilisation=1.0,
            rise_history=timedelta(hours=1),
            scale_down_target=self.scale_down_target,
            stabilisation_window=timedelta(minutes=self.stabilisation_minutes),
            headroom_quantile=self.headroom_quantile,
        )
        return policy_for(base, startup_minutes)


def shipped() -> Config:
    p = ScalingPolicy()
    return Config(
        p.scale_down_target, round(p.stabilisation_window.total_seconds() / 60), p.headroom_quantile
    )


GRIDS: dict[str, list[Config]] = {
    "full": [
        Config(down, window, q) for down in (0.8, 0.85, 0.9) for window in (6, 10, 15) for q in (0.5, 0.7)
    ],
    "quick": [Config(0.85, 6, 0.5), Config(0.9, 10, 0.7)],
}


# ------------------------------------------------------------------------------------------ replays
@dataclass
class Replays:
    """Every replay once: baselines per (trace, start-up), autarky per (trace, start-up, config)."""

    traces: list[Trace]
    settings: list[Settings]
    configs: list[Config]
    baselines: dict[tuple[int, int], dict[str, Result]]
    autarky: dict[tuple[int, int, int], Result]

    def trace_result(self, i: int, s: int, c: int) -> TraceResult:
        trace = self.traces[i]
        results = {"autarky": self.autarky[i, s, c], **self.baselines[i, s]}
        return TraceResult(
            trace, unit_size(trace.demand, self.settings[s]), sum(steady_hours(trace.demand)), results
        )

    def summary(self, indices: Sequence[int], s: int, c: int) -> Summary:
        return summarise([self.trace_result(i, s, c) for i in indices], self.settings[s].hpa_targets)


def replay_all(traces: list[Trace], settings: list[Settings], configs: list[Config], workers: int) -> Replays:
    replays = Replays(traces, settings, configs, {}, {})
    jobs: list[tuple[int, tuple[int, ...]]] = []  # (minutes, key)
    for i, trace in enumerate(traces):
        for s in range(len(settings)):
            jobs.append((trace.minutes, (i, s)))
            jobs.extend((trace.minutes, (i, s, c)) for c in range(len(configs)))
    jobs.sort(key=lambda job: -job[0])  # longest first: the pool ends together

    def submit(pool: ProcessPoolExecutor | None, key: tuple[int, ...]) -> Future[object] | object:
        trace, setting = traces[key[0]], settings[key[1]]
        if len(key) == 2:
            fn, args = simulate_baselines, (trace, setting)
        else:
            fn, args = simulate_autarky, (trace, setting, configs[key[2]].policy(setting.startup_minutes))
        return pool.submit(fn, *args) if pool else fn(*args)  # type: ignore[operator]

    started, total = time.perf_counter(), len(jobs)

    def store(n: int, key: tuple[int, ...], value: object) -> None:
        if len(key) == 2:
            replays.baselines[key] = value  # type: ignore[index,assignment]
        else:
            replays.autarky[key] = value  # type: ignore[index,assignment]
        if n * 10 // total != (n - 1) * 10 // total:  # every tenth
            print(f"  {n}/{total} replays, {time.perf_counter() - started:.0f} s", file=sys.stderr)

    if workers > 1 and total > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [(key, submit(pool, key)) for _, key in jobs]
            for n, (key, future) in enumerate(futures, 1):
                store(n, key, future.result())  # type: ignore[union-attr]
    else:
        for n, (_, key) in enumerate(jobs, 1):
            store(n, key, submit(None, key))
    return replays


# ------------------------------------------------------------------------------------------ choosing
@dataclass(frozen=True)
class Choice:
    config: int
    how: str  # "feasible", or which fallback


def choose(replays: Replays, indices: Sequence[int]) -> Choice:
    """The objective on the traces `indices` (see the module's docstring, step 3)."""
    summaries = {
        c: [replays.summary(indices, s, c) for s in range(len(replays.settings))]
        for c in range(len(replays.configs))
    }

    def violations(c: int) -> tuple[int, float]:
        return sum(x.violation_minutes for x in summaries[c]), max(x.cost for x in summaries[c])

    feasible = [c for c, xs in summaries.items() if all(x.feasible for x in xs)]
    if feasible:
        return Choice(min(feasible, key=violations), "feasible")
    cheap = [c for c, xs in summaries.items() if all(x.cost <= 1.15 for x in xs)]
    if cheap:
        return Choice(min(cheap, key=violations), "fallback: none feasible; least violating within 115 %")
    return Choice(min(summaries, key=lambda c: violations(c)[1]), "fallback: none within 115 %; the cheapest")


def cells(summary: Summary) -> str:
    steady = f"{summary.steady_rate:.2f}" if summary.steady_rate is not None else "-"
    return (
        f"{summary.violation_minutes:>6} {summary.hpa_at_cost:>7.0f} {100 * summary.cost:>6.1f} {steady:>5}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full", help="the configs to choose among")
    args = parser.parse_args(argv)
    settings = settings_from(parser, args)
    try:
        traces = load_traces(args.trace, args.data)
    except TraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(traces) < 2:
        parser.error("leave-one-trace-out needs at least 2 traces")
    configs = GRIDS[args.grid]
    started = time.perf_counter()
    replays = replay_all(traces, settings, configs, args.workers)
    startups = [s.startup_minutes for s in settings]
    everything = list(range(len(traces)))

    print(
        f"Leave-one-trace-out choice of ScalingPolicy's defaults: {len(traces)} traces, start-up delays "
        f"{', '.join(map(str, startups))} min, grid '{args.grid}' ({len(configs)} configs: scale_down_target"
        f" {sorted({c.scale_down_target for c in configs})}, stabilisation_window "
        f"{sorted({c.stabilisation_minutes for c in configs})} min, headroom_quantile "
        f"{sorted({c.headroom_quantile for c in configs})}; target_utilisation 1, rise_history 1 h)"
    )
    print(
        "  objective on the training traces: cost <= 115 % of the oracle and <= 1 action per steady hour at "
        "every delay, then the fewest violation minutes over all delays"
    )
    print()
    print(
        "per trace left out: the config chosen on the other traces, on the left-out trace (A autarky; "
        "H= HPA-like at A's cost on that trace's curve; cost in % of the oracle; st/h: actions per steady h)"
    )
    names = [short_name(t.name, [u.name for u in traces]) for t in traces]
    width = max(len("held out"), *map(len, names))
    cw = max(len(str(c)) for c in configs)
    per_delay = " | ".join(f"{s} min: {'viol A':>6} {'H=':>7} {'cost':>6} {'st/h':>5}" for s in startups)
    head = f"{'held out':<{width}} {'config':<{cw}} | {per_delay} | how"
    print(head)
    print("-" * len(head))
    held: list[int] = []  # chosen config per held-out trace
    for i, name in enumerate(names):
        choice = choose(replays, [j for j in everything if j != i])
        held.append(choice.config)
        row = " | ".join(
            f"{'':>{len(str(s)) + 6}}{cells(replays.summary([i], k, choice.config))}"
            for k, s in enumerate(startups)
        )
        print(f"{name:<{width}} {configs[choice.config]!s:<{cw}} | {row} | {choice.how}")

    print()
    print("totals over the held-out traces (each replayed with the config chosen without it):")
    for k, s in enumerate(startups):
        per_trace = [replays.trace_result(i, k, held[i]) for i in everything]
        summary = summarise(per_trace, settings[k].hpa_targets)
        for goal in goals(summary):
            print(f"  {s} min  {mark(goal.met)}  {goal.text}")
    fewer = sum(
        1
        for i in everything
        for k in range(len(startups))
        if (r := replays.trace_result(i, k, held[i])).results["autarky"].violation_minutes
        < at_cost(r.hpa_curve(), r.results["autarky"].instance_minutes)
    )
    print(
        f"  held-out (trace, delay) pairs with fewer violation minutes than HPA-like at equal cost: "
        f"{fewer} of "
        f"{len(traces) * len(startups)}"
    )

    print()
    final = choose(replays, everything)
    print(f"chosen on all traces: {configs[final.config]} ({final.how})")
    for k, s in enumerate(startups):
        for goal in goals(replays.summary(everything, k, final.config)):
            print(f"  {s} min  {mark(goal.met)}  {goal.text}")
    defaults = shipped()
    if configs[final.config] == defaults:
        print(f"the choice equals ScalingPolicy's shipped defaults ({defaults})")
    else:
        print(
            f"the choice DIFFERS from ScalingPolicy's shipped defaults ({defaults}): change them in "
            f"autarky/scaling/policy_types.py, or say why not"
        )
    print(f"chosen in {time.perf_counter() - started:.1f} s ({args.workers} worker(s))", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
