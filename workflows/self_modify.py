"""`SelfModificationWorkflow`: propose a better version of an agent, test it in the sandbox, benchmark it
against the incumbent, promote it only on evidence (and a person's approval when risky), watch it, and
roll it back on a regression.

1. Snapshot the incumbent (its version and its figure on the search part).
2. Each generation makes candidates from the best so far: LLM patches when an LLM is configured and the
   run is not `offline`, else a (1+λ) evolution strategy over the declared parameters.
3. Each candidate passes static checks and its tests in the sandbox, or it is a failed candidate and is
   never benchmarked.
4. The survivors are measured on the search part; the best of all generations goes on.
5. It is compared with the incumbent on the decision part, which the search never saw (A B A B …); the
   bootstrap interval's lower bound must clear the threshold.
6. Sources other than the ones this release ships (LLM-written or not), and parameter changes of a
   risky agent, wait for approval; the whole diff is in the knowledge base (`autarky approvals --diff`).
7. Promotion moves the agent's active pointer; the product reads it at run time.
8. Watch: `watch_runs` times, a day apart by default, the promoted version's live metric (the person's
   approvals of the research items it called relevant; the detector's alerts per metric-day) is tested
   against the incumbent's before the promotion; a significant drop beyond the tolerance rolls back to the
   incumbent (before release 30 the benchmark ran again, which never changed).

Steps 2–8 run on the host that took step 1 (its own task queue: they share its files, and its cache of
the versions, which live in the knowledge base); a host that stops taking them (its worker died) is
noticed by a schedule-to-start timeout, and the run's steps move to whichever host takes a new snapshot.

The ID is `evolve/<agent>/<n>`; the UI shows the step, candidates and best figure as current details.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

from workflows.approval import ApprovalGate
from workflows.compat.self_modify import live_watch, promotes

with workflow.unsafe.imports_passed_through():
    from autarky.core import search_attributes as sa
    from autarky.core.approval import ApprovalState
    from autarky.llm.errors import LLM_BUDGET_SPENT, LLM_NOT_CONFIGURED, LLM_UNPRICED
    from autarky.selfmod.agents import default_parameters
    from autarky.selfmod.archive import Archive
    from autarky.selfmod.cma_search import cma_children
    from autarky.selfmod.live_types import NO_LIVE_METRIC, LiveCountsInput, live_counts
    from autarky.selfmod.live_watch import live_regression
    from autarky.selfmod.policy import adapt_step, better, mutate, relative_improvement
    from autarky.selfmod.types import (
        AgentRunInput,
        BenchmarkOutcome,
        Candidate,
        CandidateOrigin,
        CheckInput,
        CheckOutcome,
        CompareInput,
        GenerationBest,
        MakeCandidatesInput,
        MeasureInput,
        Measurement,
        ParameterProposal,
        PromoteInput,
        ProposeOutcome,
        ProposePatchesInput,
        ReviewInput,
        RollbackInput,
        SelfModifyInput,
        SelfModifyResult,
        Snapshot,
        check_candidate,
        compare,
        make_candidates,
        measure,
        promote_version,
        propose_patches,
        review_promotion,
        rollback_version,
        snapshot_agent,
    )

KIND = "self_modify"
FIRST_STEP = 0.2  # of each parameter's normalised range
# Below this many paired units (files, examples) a bootstrap interval is not worth trusting.
MIN_PAIRED_UNITS = 8
FINAL = ["SandboxUnavailable", "BadAgent", "BenchmarkFailed", "RollbackRefused", "LlmNotConfigured"]
RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=FINAL)
# Failures of propose_patches after which the run evolves parameters offline, as without an LLM.
OFFLINE_INSTEAD = frozenset({LLM_NOT_CONFIGURED, LLM_BUDGET_SPENT, LLM_UNPRICED})
QUICK = {make_candidates, promote_version, rollback_version, review_promotion}
HEARTBEATING = {snapshot_agent, check_candidate, measure, compare}
# How long a step may wait for the run's host to take it: its steps queue behind each other (a few at a
# time), so minutes, not seconds. Then the host counts as lost and the steps move (MOVES times at most).
HOST_WAIT = timedelta(minutes=5)
MOVES = 3


class HostLost(Exception):
    """No host took the run's steps: the run ends failed, saying so."""


@dataclass
class Best:
    commit: str
    parameters: dict[str, float]
    figure: float
    origin: CandidateOrigin
    key: str = "incumbent"
    summary: str = ""


def evolve_workflow_id(agent: str, n: int) -> str:
    return f"evolve/{agent}/{n}"


@workflow.defn
class SelfModificationWorkflow(ApprovalGate):
    @workflow.init
    def __init__(self, request: SelfModifyInput) -> None:
        self._init_approval_gate([])
        self._step = "starting"
        self._candidates = 0
        self._failed = 0
        self._sandbox_runs = 0
        self._best: float | None = None
        self._llm_code: set[str] = set()  # commits whose code an LLM wrote
        self._host_queue: str | None = None  # the queue of the run's host, once its snapshot is taken
        # Every measured point and the archive of diverse ones, for the search methods that use them.
        self._history: list[tuple[dict[str, float], float]] = []
        self._archive: Archive | None = None  # made from the snapshot's spec (search "archive")
        self._defaults: dict[str, float] = {}  # the agent's shipped parameters, from the snapshot
        self._moves = 0

    @workflow.query
    def progress(self) -> dict[str, object]:
        return {
            "step": self._step,
            "candidates": self._candidates,
            "failed": self._failed,
            "sandbox_runs": self._sandbox_runs,
            "best": self._best,
        }

    @workflow.run
    async def run(self, request: SelfModifyInput) -> SelfModifyResult:
        self._request = request
        workflow.upsert_search_attributes(
            [sa.KIND.value_set(KIND), sa.AGENT.value_set(request.agent), sa.DECISION.value_set("running")]
        )
        self._result = SelfModifyResult(agent=request.agent, status="running", incumbent_commit="")
        try:
            return await self._evolve(request)
        except ActivityError as error:  # a step that cannot go on: the run ends readably, not as a crash
            return self._end(self._result, "failed", f"{self._step}: {_why(error)}")
        except HostLost as lost:
            return self._end(self._result, "failed", f"{self._step}: {lost}")

    async def _evolve(self, request: SelfModifyInput) -> SelfModifyResult:
        info = workflow.info()
        by = info.workflow_id
        # Candidates and logs are keyed by the run too: a reused workflow id never finds an old run's.
        run_id = f"{info.workflow_id}@{info.run_id[:8]}"
        snap: Snapshot = await self._activity(
            snapshot_agent, AgentRunInput(agent=request.agent, run_id=run_id)
        )
        self._run_id, self._host_queue = run_id, snap.task_queue
        spec, incumbent = snap.spec, snap.pointer
        result = self._result
        result.incumbent_commit = incumbent.commit
        if snap.units.get("decision", 0) < MIN_PAIRED_UNITS:
            return self._end(result, "not_promoted", f"too few units on the decision part ({snap.units})")
        self._show("measuring the incumbent")
        baseline = await self._measure(run_id, "search", [incumbent.commit], "baseline")
        if incumbent.commit not in baseline.figures:
            return self._end(result, "failed", f"the incumbent fails its own benchmark: {baseline.failures}")
        result.baseline_search = self._best = baseline.figures[incumbent.commit]
        best = Best(incumbent.commit, incumbent.parameters, result.baseline_search, CandidateOrigin.INCUMBENT)
        if request.search == "archive" and len(spec.parameters) >= 2:
            # Cells over the first two declared parameters (for the detector: window and levels).
            names = (spec.parameters[0].name, spec.parameters[1].name)
            self._archive = Archive(spec.parameters, spec.direction, descriptor_parameters=names)
        # Snapshots before release 30 carry no defaults; their agents are all declared in code.
        self._defaults = snap.defaults or default_parameters(spec.name)
        self._remember({**self._defaults, **incumbent.parameters}, result.baseline_search)
        use_llm = not request.offline and snap.llm != "offline"
        step, failures = FIRST_STEP, list[str]()
        for generation in range(1, request.generations + 1):
            self._show(f"generation {generation}/{request.generations}")
            candidates = await self._propose(request, run_id, spec, best, generation, step, failures, use_llm)
            if candidates is None:  # no LLM after all: parameters from here on
                use_llm = False
                candidates = await self._propose(
                    request, run_id, spec, best, generation, step, failures, False
                )
            assert candidates is not None
            self._candidates += len(candidates)
            passing = await self._check_all(request, run_id, candidates, failures)
            improved = 0
            if passing:
                measured = await self._measure(
                    run_id, "search", [c.commit for c in passing], f"g{generation}"
                )
                for c in passing:
                    figure = measured.figures.get(c.commit)
                    if figure is None:
                        self._failed += 1
                        failures.append(f"{c.key}: {measured.failures.get(c.commit, 'no figure')}")
                        continue
                    self._remember({**self._defaults, **c.parameters}, figure)
                    if better(figure, best.figure, spec.direction):
                        improved += 1
                        best = Best(c.commit, c.parameters, figure, c.origin, c.key, c.summary)
                        self._best = figure
            step = adapt_step(step, improved, max(len(candidates), 1))
            result.generations.append(
                GenerationBest(generation=generation, commit=best.commit, search=best.figure)
            )
        result.candidates, result.failed_candidates = self._candidates, self._failed
        result.best_search = best.figure
        if best.origin == CandidateOrigin.INCUMBENT:
            why = f"; {self._failed} of {self._candidates} failed: {failures[-1][:200]}" if failures else ""
            return self._end(result, "not_promoted", f"no candidate beat the incumbent (search part{why})")

        self._show(f"comparing {best.key} with the incumbent on the decision part")
        compared: BenchmarkOutcome = await self._activity(
            compare,
            CompareInput(
                agent=spec.name,
                run_id=run_id,
                incumbent=incumbent.commit,
                candidate=best.commit,
                repeats=spec.repeats,
                seed=workflow.random().randint(0, 2**31 - 1),
                limits=request.limits,
            ),
            sandbox_runs=2 * spec.repeats,
        )
        self._sandbox_runs += compared.runs
        result.baseline_decision, result.best_decision = compared.incumbent, compared.candidate
        result.improvement = gain = compared.improvement
        # The bar in the unit the interval was computed in (a run begun before an upgrade that changed it
        # must not read points against a share); older comparisons carry none: the snapshot's.
        bar = spec.threshold if compared.bar is None else compared.bar
        threshold = bar if request.threshold is None else request.threshold
        # The bar is in the agent's unit (points or a share); the interval's confidence grows with the
        # looks this data has had (policy.look_confidence).
        figures = (
            f"{best.key} ({best.summary}): decision part {compared.incumbent:.2f} → "
            f"{compared.candidate:.2f}, {gain.text()}, look {compared.look} at this data; "
            f"bar {gain.show(threshold)}"
        )
        if not promotes(gain, threshold):
            return self._end(result, "not_promoted", f"not better enough on unseen data: {figures}")

        # Code an LLM wrote, also when parameters were tuned on top of it, always asks a person.
        llm_code = best.commit in self._llm_code
        ask = llm_code or (spec.risky if request.require_approval is None else request.require_approval)
        # Sources other than the shipped ones ask a person whoever wrote them: after an upgrade a
        # parameter-only candidate carries the previous release's code.
        self._show(f"comparing {best.key}'s sources with the shipped ones")
        review = await self._activity(review_promotion, ReviewInput(agent=spec.name, commit=best.commit))
        ask = ask or review.differs
        if ask:
            self._show("waiting for approval")
            approval_id = f"promote-{spec.name}-{best.commit[:10]}"
            if review.differs:
                diff = (
                    f"\nits sources differ from the ones this release ships ({review.diff_lines} lines "
                    f"changed):\n\n{review.excerpt}"
                )
            else:
                diff = ""
            self.request_approval(
                approval_id,
                subject=f"promote {spec.name} version {best.commit[:10]}",
                why=f"{figures}{diff}",
                timeout=request.approval_timeout,
                risk=0.8 if llm_code or review.differs else 0.4,
            )
            decided = await self.wait_for_decision(approval_id)
            if decided.state != ApprovalState.APPROVED:
                return self._end(result, "rejected", f"promotion {decided.state.value}: {figures}")

        self._show("promoting")
        try:
            pointer = await self._activity(
                promote_version,
                PromoteInput(
                    agent=spec.name,
                    commit=best.commit,
                    by=by,
                    reason=figures,
                    metric=compared.candidate,
                    expected=incumbent.commit,
                ),
            )
        except ActivityError as error:
            if _error_type(error) != "VersionConflict":
                raise
            return self._end(result, "not_promoted", f"not promoted: {_why(error)}")
        result.promoted_commit = best.commit
        workflow.upsert_search_attributes([sa.DECISION.value_set("promoted")])
        if live_watch():
            # From when the version became active: the product used it before this task ran (late, if busy).
            regression = await self._watch_live(request, incumbent.commit, best.commit, pointer.changed_at)
        else:
            regression = await self._watch(request, run_id, spec.direction, best.commit, compared.candidate)
        if regression is None:
            if llm_code and not spec.live_code:
                figures += (
                    "; its code runs once workers are built from this version (until then the product "
                    "keeps running the newest version with the workers' own code, or the shipped defaults)"
                )
            return self._end(result, "promoted", figures)
        self._show("rolling back")
        try:
            await self._activity(
                rollback_version,
                RollbackInput(
                    agent=spec.name, by=by, reason=regression, to=incumbent.commit, only_if=best.commit
                ),
            )
        except ActivityError as error:
            if _error_type(error) != "VersionConflict":
                raise
            return self._end(result, "superseded", f"{regression}; but {_why(error)}")
        return self._end(result, "rolled_back", regression)

    # ------------------------------------------------------------------ steps

    async def _propose(
        self,
        request: SelfModifyInput,
        run_id: str,
        spec,
        best: Best,
        generation: int,
        step: float,
        failures: list[str],
        use_llm: bool,
    ) -> list[Candidate] | None:
        if use_llm:
            try:
                outcome: ProposeOutcome = await self._activity(
                    propose_patches,
                    ProposePatchesInput(
                        agent=spec.name,
                        run_id=run_id,
                        base=best.commit,
                        generation=generation,
                        count=request.population,
                        baseline=best.figure,
                        failures=failures[-5:],
                        brief=request.brief,
                    ),
                )
            except ActivityError as error:
                cause = error.cause
                # No LLM, or none the budgets allow today: evolve parameters offline instead.
                if isinstance(cause, ApplicationError) and cause.type in OFFLINE_INSTEAD:
                    return None
                raise
            self._failed += len(outcome.rejected)
            failures.extend(outcome.rejected)
            self._llm_code.update(c.commit for c in outcome.candidates)
            return outcome.candidates
        children = self._children(request, spec, best, step)
        proposals = [
            ParameterProposal(key=f"g{generation}c{i}", parameters=p) for i, p in enumerate(children, 1)
        ]
        if not proposals:
            return []
        made: list[Candidate] = await self._activity(
            make_candidates,
            MakeCandidatesInput(agent=spec.name, run_id=run_id, base=best.commit, proposals=proposals),
        )
        if best.commit in self._llm_code:  # parameters tuned on LLM-written code: still LLM code
            self._llm_code.update(c.commit for c in made)
        return made

    def _children(self, request: SelfModifyInput, spec, best: Best, step: float) -> list[dict[str, float]]:
        """`population` parameter children by the run's search method (SelfModifyInput.search)."""
        defaults = self._defaults
        if request.search == "cma":  # rebuilt from every measured point (the optimiser is stateless here)
            with workflow.unsafe.imports_passed_through():  # cma and numpy load outside the sandbox
                return cma_children(
                    self._history,
                    spec.parameters,
                    spec.direction,
                    workflow.random().randrange(2**31),
                    request.population,
                )
        if self._archive is not None and self._archive.elites():
            # Parents from the archive, weighted by score and novelty: stepping stones, not only the best.
            parents = self._archive.choose_parents(workflow.random(), request.population)
            children: list[dict[str, float]] = []
            for parent in parents:
                children += mutate({**defaults, **parent}, spec.parameters, step, workflow.random(), 1)
            return children
        # The (1+λ) strategy. A version written before a knob existed (release 29 replaced the detector's
        # `suppression`) takes the shipped value of the knobs it lacks.
        return mutate(
            {**defaults, **best.parameters}, spec.parameters, step, workflow.random(), request.population
        )

    def _remember(self, parameters: dict[str, float], figure: float) -> None:
        """A measured point for the search methods that learn from all of them (archive, CMA-ES)."""
        if self._request.search == "es":
            return
        self._history.append((parameters, figure))
        if self._archive is not None:
            self._archive.add(parameters, figure)

    async def _check_all(
        self, request: SelfModifyInput, run_id: str, candidates: list[Candidate], failures: list[str]
    ) -> list[Candidate]:
        """Static checks and sandbox tests, a few candidates at a time; the ones that pass."""
        passing: list[Candidate] = []
        batch = max(1, request.parallel_checks)
        for start in range(0, len(candidates), batch):
            group = candidates[start : start + batch]
            outcomes: list[CheckOutcome] = await asyncio.gather(
                *(
                    self._activity(
                        check_candidate,
                        CheckInput(agent=request.agent, run_id=run_id, candidate=c, limits=request.limits),
                        sandbox_runs=2,
                    )
                    for c in group
                )
            )
            for c, outcome in zip(group, outcomes, strict=True):
                self._sandbox_runs += 2 if outcome.passed else 1
                if outcome.passed:
                    passing.append(c)
                else:
                    self._failed += 1
                    failures.append(f"{c.key}: {outcome.reason}")
        return passing

    async def _measure(self, run_id: str, part: str, commits: list[str], label: str) -> Measurement:
        measured: Measurement = await self._activity(
            measure,
            MeasureInput(
                agent=self._request.agent,
                run_id=run_id,
                part=part,  # type: ignore[arg-type]
                commits=commits,
                label=label,
                limits=self._request.limits,
            ),
            sandbox_runs=len(commits),
        )
        self._sandbox_runs += measured.runs
        return measured

    async def _watch(
        self, request: SelfModifyInput, run_id: str, direction: str, commit: str, promised: float
    ) -> str | None:
        """None if the promoted version holds its figure through the watch, else why it is rolled back."""
        for i in range(1, request.watch_runs + 1):
            self._show(f"watching ({i}/{request.watch_runs})")
            await workflow.sleep(request.watch_interval)
            measured = await self._measure(run_id, "decision", [commit], f"watch{i}")
            figure = measured.figures.get(commit)
            if figure is None:
                return f"watch run {i}: the promoted version failed: {measured.failures.get(commit)}"
            change = relative_improvement(promised, figure, direction)  # type: ignore[arg-type]
            if change < -request.regression_tolerance:
                return (
                    f"watch run {i}: figure {figure:.2f} is {change:+.1%} against {promised:.2f} at "
                    f"promotion (tolerance {request.regression_tolerance:.0%}): rolled back"
                )
        return None

    async def _watch_live(
        self, request: SelfModifyInput, incumbent: str, commit: str, promoted_at: datetime
    ) -> str | None:
        """None if the promoted version's live metric holds against the incumbent's before the promotion
        through the watch (or there is too little evidence to say), else why it is rolled back. Each look
        tests at watch_alpha / watch_runs, so the watch as a whole rolls back a sound version rarely."""
        alpha = request.watch_alpha / max(1, request.watch_runs)
        baseline = LiveCountsInput(
            agent=request.agent,
            version=incumbent,
            since=promoted_at - request.watch_baseline,
            until=promoted_at,
        )
        since = promoted_at + request.watch_settle
        for i in range(1, request.watch_runs + 1):
            self._show(f"watching the live metric ({i}/{request.watch_runs})")
            await workflow.sleep(request.watch_interval)
            if workflow.now() <= since:
                continue
            # The knowledge base, not the run's files: any full worker answers (the host may be gone by
            # now), and a failed read is one look missed, not the end of the watch.
            now = LiveCountsInput(agent=request.agent, version=commit, since=since, until=workflow.now())
            try:
                before = await self._execute(live_counts, baseline, 0, request.activity_task_queue)
                after = await self._execute(live_counts, now, 0, request.activity_task_queue)
            except ActivityError as error:
                if _error_type(error) == NO_LIVE_METRIC:
                    self._result.watch = f"not watched: {_why(error)}"
                    return None
                self._result.watch = f"look {i}/{request.watch_runs} missed: {_why(error)}"
                continue
            verdict = live_regression(before, after, request.regression_tolerance, alpha)
            self._result.watch = f"look {i}/{request.watch_runs}: {verdict.reason}"
            if verdict.regressed:
                return f"live watch, look {i}: {verdict.reason}: rolled back"
        return None

    # ------------------------------------------------------------------ plumbing

    async def _activity(self, fn, arg, sandbox_runs: int = 0):  # a typed activity stub and its input
        if self._host_queue is None:  # the snapshot: whichever host takes it becomes the run's
            return await self._execute(fn, arg, sandbox_runs, self._request.activity_task_queue)
        while True:
            try:
                return await self._execute(fn, arg, sandbox_runs, self._host_queue, HOST_WAIT)
            except ActivityError as error:
                if not _not_started(error):
                    raise
            await self._move_host()

    async def _move_host(self) -> None:
        """The run's host took no step for HOST_WAIT: a new snapshot on the shared queue finds another
        (everything the run made is in the knowledge base), at most MOVES times."""
        lost = self._host_queue
        if self._moves >= MOVES:
            raise HostLost(
                f"no host took this run's steps for {HOST_WAIT} ({MOVES} moves, last {lost}): are the "
                f"full workers (`autarky worker`) serving {self._request.activity_task_queue} running? "
                "Nothing was promoted by this step; start the evolution again once they are"
            )
        self._moves += 1
        self._show(f"host {lost} took no step for {HOST_WAIT}: moving to another")
        snap: Snapshot = await self._execute(
            snapshot_agent,
            AgentRunInput(agent=self._request.agent, run_id=self._run_id),
            0,
            self._request.activity_task_queue,
        )
        self._host_queue = snap.task_queue

    async def _execute(
        self, fn, arg, sandbox_runs: int, task_queue: str, schedule_to_start: timedelta | None = None
    ):
        # The sandbox runs heartbeat every few seconds: a dead worker is noticed in half a minute; the
        # time allowed grows with the runs an activity makes, each bounded by the wall-clock limit.
        heartbeats = fn in HEARTBEATING
        allowed = timedelta(minutes=10) + sandbox_runs * timedelta(seconds=self._request.limits.wall_seconds)
        if fn in QUICK:  # git and a file: a worker lost in one is retried elsewhere within a minute
            allowed = timedelta(minutes=1)
        what = getattr(arg, "label", None) or getattr(getattr(arg, "candidate", None), "key", None) or ""
        return await workflow.execute_activity(
            fn,
            arg,
            task_queue=task_queue,
            schedule_to_start_timeout=schedule_to_start,
            start_to_close_timeout=allowed,
            heartbeat_timeout=timedelta(seconds=30) if heartbeats else None,
            retry_policy=RETRY,
            summary=f"{fn.__name__.replace('_', ' ')} {what}".strip() + f" · {self._request.agent}",
        )

    def _show(self, step: str) -> None:
        self._step = step
        best = "—" if self._best is None else f"{self._best:.2f}"
        workflow.set_current_details(
            f"**{self._request.agent}**: {step} · candidates {self._candidates} "
            f"({self._failed} failed) · best on the search part {best} · sandbox runs {self._sandbox_runs}"
        )

    def _end(self, result: SelfModifyResult, status: str, message: str) -> SelfModifyResult:
        result.status, result.message = status, message
        result.candidates, result.failed_candidates = self._candidates, self._failed
        result.sandbox_runs = self._sandbox_runs
        self._show(f"{status}: {message}")
        workflow.upsert_search_attributes([sa.DECISION.value_set(status)])
        workflow.upsert_memo({"status": status, "message": message, "best_search": result.best_search})
        return result


def _why(error: ActivityError) -> str:
    cause = error.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or error)


def _not_started(error: ActivityError) -> bool:
    """The activity's host never took it (schedule-to-start timeout): a host that is gone."""
    cause = error.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


def _error_type(error: ActivityError) -> str | None:
    cause = error.cause
    return cause.type if isinstance(cause, ApplicationError) else None
