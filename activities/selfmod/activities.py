"""Self-modification activities: snapshot an agent, make candidates (parameters, or LLM patches), check
them (static + sandbox tests), measure them in the sandbox and judge them outside it, promote and roll back.

Every run of a candidate's code happens in the sandbox (activities/selfmod/sandbox.py); without
bubblewrap the activities fail with the install hint and nothing runs. Diffs, logs and per-unit figures go
to the agent's storage (<data_dir>/agents/<agent>/runs/<run>/); histories carry paths and figures only.
The blocking work runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.selfmod import candidate_tests
from activities.selfmod.candidate_tests import COLLECT, SELF_TEST, TESTS, ShippedTestsBroken
from activities.selfmod.evaluation import Dataset, load_dataset
from activities.selfmod.goal_checks import GoalChecks
from activities.selfmod.running_version import running_version
from activities.selfmod.sandbox import (
    DATA_ROOT,
    SandboxUnavailable,
    UnboundedTotals,
    new_workdir,
    remove_workdir,
    run_sandboxed,
    sandbox_python,
)
from activities.selfmod.shipped import shipped_exists, shipped_text
from activities.selfmod.static_checks import static_check
from activities.selfmod.tools import ToolMissing, require
from activities.selfmod.versions import (
    AgentRepository,
    PatchRejected,
    VersionConflict,
    VersionStoreError,
    sanitise_run_id,
)
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.llm.settings import resolve_provider
from autarky.selfmod.agents import agent_spec, default_parameters
from autarky.selfmod.policy import improvement_interval, look_confidence
from autarky.selfmod.types import (
    ActiveAgentInput,
    ActivePointer,
    AgentRunInput,
    AgentSpec,
    BenchmarkOutcome,
    Candidate,
    CandidateOrigin,
    CheckInput,
    CheckOutcome,
    CompareInput,
    MakeCandidatesInput,
    MeasureInput,
    Measurement,
    PromoteInput,
    ProposeOutcome,
    ProposePatchesInput,
    RollbackInput,
    SandboxLimits,
    Snapshot,
)

if TYPE_CHECKING:
    from activities.selfmod.agent_store import AgentStore

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_UNAVAILABLE = "SandboxUnavailable"
UNBOUNDED_SANDBOX = "UnboundedSandbox"
BAD_AGENT = "BadAgent"
TOOL_MISSING = "ToolMissing"
VERSION_CONFLICT = "VersionConflict"
DIFF_EXCERPT = 3000  # characters of an LLM patch shown in its approval


# The agent's tests need pytest alone: the plugins installed beside it (asyncio, xdist, …) would cost
# ~0.8 s a run to load and are code the candidate has no business running.
PLAIN_PYTEST = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
HEARTBEAT_EVERY = 5.0  # seconds; the workflow's heartbeat timeout is a few times this


async def heartbeating(work: Callable[[], T]) -> T:
    """`work()` in a thread, heartbeating while it runs: a worker that dies in a long sandbox run is
    noticed by its heartbeat timeout, and the activity retried elsewhere, instead of after an hour."""
    task = asyncio.ensure_future(asyncio.to_thread(work))
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
        if done:
            return task.result()
        if activity.in_activity():  # also called directly (bench/selfmod.py)
            activity.heartbeat()


def safe_name(run_id: str) -> str:
    """The run id as a directory name, the same one the version repository files diffs under."""
    return sanitise_run_id(run_id)


class SelfModActivities(GoalChecks):
    def __init__(
        self,
        settings: AutarkySettings,
        environ: Mapping[str, str] = os.environ,
        kb: KnowledgeBaseHandle | None = None,
        host_task_queue: str | None = None,
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.root = settings.data_dir / "agents"  # this host's cache of the store, and its runs' files
        self.kb = kb or KnowledgeBaseHandle(settings.knowledge_db_url)
        # This host's own queue, which this worker also serves: a run's later steps go there (one host).
        self.host_task_queue = host_task_queue
        self._datasets: dict[tuple[str, str], Dataset] = {}
        self._store: AgentStore | None = None

    def store(self) -> AgentStore:
        """The agents' versions every host shares (the knowledge base; SQLAlchemy loads on first use)."""
        if self._store is None:
            from activities.selfmod.agent_store import AgentStore

            self._store = AgentStore(self.kb)
        return self._store

    # ------------------------------------------------------------------ helpers

    def repository(self, agent: str) -> tuple[AgentSpec, AgentRepository]:
        try:
            spec = agent_spec(agent)
        except ValueError as e:
            raise ApplicationError(str(e), type=BAD_AGENT, non_retryable=True) from e
        self.require_tools("git")
        repo = AgentRepository(self.root, agent, self.store())
        files = {path: shipped_text(path) for path in spec.source_files}
        repo.ensure(files, default_parameters(agent), datetime.now(UTC))
        return spec, repo

    @staticmethod
    def require_tools(*names: str) -> None:
        """ToolMissing as a non-retryable error: retrying cannot install a program."""
        try:
            require(*names)
        except ToolMissing as e:
            raise ApplicationError(str(e), type=TOOL_MISSING, non_retryable=True) from e

    def run_dir(self, agent: str, run_id: str) -> Path:
        path = self.root / agent / "runs" / safe_name(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def dataset(self, agent: str, part: str) -> Dataset:
        key = (agent, part)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(agent, part, self.settings.evolution)  # type: ignore[arg-type]
        return self._datasets[key]

    def data_dir_for(self, agent: str, part: str) -> Path:
        """The part's inputs, labels stripped, where the sandbox can be lent them read-only."""
        dataset = self.dataset(agent, part)
        directory = self.root / agent / "datasets" / f"{part}-{dataset.digest()}"
        dataset.write_inputs(directory)
        return directory

    def workdir(self, spec: AgentSpec, repo: AgentRepository, commit: str) -> Path:
        """A fresh work directory: the worker's own `autarky` package with the version's files over it,
        its parameters, and the agent's tests (which a candidate cannot change)."""
        parent = self.settings.evolution.workdir_parent
        work = new_workdir(parent)
        shutil.copytree(
            PROJECT_ROOT / "autarky", work / "autarky", ignore=shutil.ignore_patterns("__pycache__")
        )
        for path, text in repo.files(commit).items():
            target = work / ("params.json" if path == "parameters.json" else path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        for test in spec.test_files:
            if not shipped_exists(test):
                remove_workdir(work)
                raise ApplicationError(
                    f"the agent's test {test} is not here (install Autarky from its source tree)",
                    type=BAD_AGENT,
                    non_retryable=True,
                )
            (work / test).parent.mkdir(parents=True, exist_ok=True)
            (work / test).write_text(shipped_text(test))
        return work

    def sandboxed(
        self,
        command: list[str],
        work: Path,
        limits: SandboxLimits,
        spec: AgentSpec,
        repo: AgentRepository,
        commit: str,
        **kwargs: object,
    ):
        """run_sandboxed; where the machine cannot bound the run's totals, only the versions the
        `allow_unbounded_totals` setting lets (by default not code other than the shipped sources) run."""
        allowed = self.settings.evolution.allow_unbounded_totals
        files = repo.files(commit) if allowed == "parameters" else {}
        own_code = any(files.get(p) != shipped_text(p) for p in spec.source_files)
        require = allowed == "never" or (allowed == "parameters" and own_code)
        try:
            return run_sandboxed(command, work, limits, require_totals=require, **kwargs)  # type: ignore[arg-type]
        except UnboundedTotals as e:
            raise ApplicationError(
                f"{e}; version {commit[:12]} of {spec.name} may not run so. Give the worker a cgroup it can "
                'write (root, or a delegated one), or set evolution.allow_unbounded_totals = "always" '
                "(AUTARKY_EVOLUTION__ALLOW_UNBOUNDED_TOTALS=always) to run it anyway",
                type=UNBOUNDED_SANDBOX,
                non_retryable=True,
            ) from e
        except SandboxUnavailable as e:
            raise ApplicationError(str(e), type=SANDBOX_UNAVAILABLE, non_retryable=True) from e

    # ------------------------------------------------------------------ activities

    @activity.defn
    async def snapshot_agent(self, request: AgentRunInput) -> Snapshot:
        """The incumbent (bootstrapping the agent's version repository on first use) and its data."""

        def snapshot() -> Snapshot:
            spec, repo = self.repository(request.agent)
            try:
                units = {p: len(self.dataset(request.agent, p).units) for p in ("search", "decision")}
            except (FileNotFoundError, ValueError) as e:
                raise ApplicationError(str(e), type=BAD_AGENT, non_retryable=True) from e
            choice = resolve_provider(self.settings.llm, self.settings.llm_environ(self.environ))
            llm = "offline" if choice is None else f"{choice.kind}:{choice.model}"
            return Snapshot(
                spec=spec,
                pointer=repo.active(),
                units=units,
                llm=llm,
                task_queue=self.host_task_queue,
                defaults=default_parameters(request.agent),
            )

        return await heartbeating(snapshot)

    @activity.defn
    async def make_candidates(self, request: MakeCandidatesInput) -> list[Candidate]:
        """Commit parameter proposals as candidates (idempotent per key)."""

        def make() -> list[Candidate]:
            _, repo = self.repository(request.agent)
            return [
                repo.create_candidate(
                    request.base,
                    p.key,
                    request.run_id,
                    p.parameters,
                    None,
                    CandidateOrigin.MUTATION,
                    _describe_change(repo.version(request.base).parameters, p.parameters),
                )
                for p in request.proposals
            ]

        return await asyncio.to_thread(make)

    @activity.defn
    async def propose_patches(self, request: ProposePatchesInput) -> ProposeOutcome:
        """Ask the LLM for patches; each that passes the patch checks becomes a candidate."""
        from activities.models.llm import LlmGateway
        from activities.selfmod.patches import propose_patches

        gateway = LlmGateway.metered(self.settings.llm, self.settings.llm_environ(self.environ), self.kb)
        if gateway.offline:
            raise ApplicationError(
                "no LLM is configured: self-modification evolves parameters offline instead",
                type="LlmNotConfigured",
                non_retryable=True,
            )
        spec, repo = await asyncio.to_thread(self.repository, request.agent)
        sources = await asyncio.to_thread(
            lambda: {p: repo.read_file(request.base, p) for p in spec.source_files}
        )
        answers = await propose_patches(
            gateway,
            spec,
            sources,
            spec.metric,
            request.baseline,
            request.failures,
            request.count,
            request.brief,
        )
        parameters = (await asyncio.to_thread(repo.version, request.base)).parameters
        outcome = ProposeOutcome(candidates=[], rejected=[])
        for i, (proposal, rejection, cost) in enumerate(answers, start=1):
            outcome.cost_usd += cost
            if proposal is None or rejection is not None:
                outcome.rejected.append(rejection or "no proposal")
                continue
            key = f"g{request.generation}p{i}"
            try:
                candidate = await asyncio.to_thread(
                    repo.create_candidate,
                    request.base,
                    key,
                    request.run_id,
                    parameters,
                    proposal.diff,
                    CandidateOrigin.LLM,
                    proposal.summary[:300],
                )
            except PatchRejected as e:
                outcome.rejected.append(f"{key}: {e}")
                continue
            outcome.candidates.append(
                candidate.model_copy(update={"diff_excerpt": proposal.diff[:DIFF_EXCERPT]})
            )
        return outcome

    @activity.defn
    async def check_candidate(self, request: CheckInput) -> CheckOutcome:
        """Static checks, then the agent's tests and self-test in the sandbox, each judged by the signed
        report of the trusted runner (candidate_tests.py), not by an exit code. A failure is an outcome."""

        def check() -> CheckOutcome:
            spec, repo = self.repository(request.agent)
            candidate = request.candidate
            self.require_tools("ruff", "pytest")
            problem = static_check(spec, repo.files(candidate.commit))
            if problem:
                return CheckOutcome(passed=False, reason=f"static check: {problem}")
            log = self.run_dir(request.agent, request.run_id) / f"{candidate.key}-test.log"
            limits = request.limits
            try:
                expected = candidate_tests.expected_tests(
                    spec,
                    PROJECT_ROOT,
                    lambda: self._runner_step(COLLECT, spec, repo, candidate.commit, limits, None)[1],
                )
            except ShippedTestsBroken as e:
                raise ApplicationError(str(e), type=BAD_AGENT, non_retryable=True) from e
            with log.open("w") as out:
                for step in (TESTS, SELF_TEST):
                    problem, _ = self._runner_step(step, spec, repo, candidate.commit, limits, out, expected)
                    if problem:
                        return CheckOutcome(passed=False, reason=f"{step}: {problem}", log_path=str(log))
            return CheckOutcome(passed=True, log_path=str(log))

        return await heartbeating(check)

    def _runner_step(
        self,
        step: str,
        spec: AgentSpec,
        repo: AgentRepository,
        commit: str,
        limits: SandboxLimits,
        out: TextIO | None,
        expected: list[str] | None = None,
    ) -> tuple[str | None, list[str]]:
        """One start of the test runner in a fresh work directory (nothing of an earlier step in it):
        (why the step failed or None, the tests collected). COLLECT runs the shipped sources."""
        work = self.workdir(spec, repo, commit)
        try:
            if step == COLLECT:
                for path in spec.source_files:
                    (work / path).write_text(shipped_text(path))
            call = candidate_tests.prepare(step, work, sandbox_python(), spec)
            result = self.sandboxed(
                call.command, work, limits, spec, repo, commit, env=PLAIN_PYTEST, **call.lent
            )
            if out is not None:
                out.write(f"$ {' '.join(call.command)}\n{result.output}\n[{result.summary()}]\n\n")
            report = candidate_tests.read_report(call)
        finally:
            remove_workdir(work)
        if step == COLLECT:
            if not result.ok:  # a busy machine's wall clock, say: the activity is retried
                raise RuntimeError(
                    f"collecting the shipped tests of {spec.name} failed ({result.summary()}): "
                    f"{result.output.strip()[-500:]}"
                )
            return None, candidate_tests.collected(report, spec)
        if isinstance(report, str):
            tail = result.output.strip().splitlines()[-1:] or [""]
            return f"{report} ({result.summary()}): {tail[0][:300]}", []
        if step == SELF_TEST:
            problem = candidate_tests.self_test_problem(report)
        else:
            problem = candidate_tests.tests_problem(report, expected or [])
        if problem is None and not result.ok:  # the report is fine, but the run did not end well
            problem = f"the run failed in the sandbox ({result.summary()})"
        return problem, []

    @activity.defn
    async def measure(self, request: MeasureInput) -> Measurement:
        """Each commit on the part, `repeats` times, interleaved; judged here with the labels."""

        def run() -> tuple[Measurement, dict[str, list[dict[str, float]]]]:
            spec, repo = self.repository(request.agent)
            data = self.data_dir_for(request.agent, request.part)
            dataset = self.dataset(request.agent, request.part)
            units: dict[str, list[dict[str, float]]] = {c: [] for c in request.commits}
            failures: dict[str, str] = {}
            runs = 0
            for _ in range(request.repeats):
                for commit in request.commits:
                    if commit in failures:
                        continue
                    runs += 1
                    problem, score = self._run_once(spec, repo, commit, data, dataset, request.limits)
                    if problem:
                        failures[commit] = problem
                    else:
                        units[commit].append(score)
            figures = {
                c: sum(sum(u.values()) for u in per) / len(per)
                for c, per in units.items()
                if per and c not in failures
            }
            return Measurement(figures=figures, failures=failures, runs=runs), units

        measurement, units = await heartbeating(run)
        path = self.run_dir(request.agent, request.run_id) / f"{request.label}-{request.part}.json"
        path.write_text(json.dumps(units))
        measurement.units_path = str(path)
        return measurement

    def _run_once(
        self,
        spec: AgentSpec,
        repo: AgentRepository,
        commit: str,
        data: Path,
        dataset: Dataset,
        limits: SandboxLimits,
    ) -> tuple[str | None, dict[str, float]]:
        work = self.workdir(spec, repo, commit)
        try:
            command = [sandbox_python(), "-m", "autarky.selfmod.harness", "run", spec.name]
            command += ["--params", "params.json", "--data", f"{DATA_ROOT}/part/inputs.json"]
            command += ["--out", "outputs.json"]
            lent = {"data": {"part": data}, "hide": dataset.label_files, "outputs": ["outputs.json"]}
            result = self.sandboxed(command, work, limits, spec, repo, commit, **lent)
            if not result.ok:
                return f"benchmark run failed in the sandbox ({result.summary()})", {}
            try:
                outputs = dataset.read_outputs(work / "outputs.json")
                return None, dataset.score(outputs).units
            except Exception as e:  # whatever the candidate wrote: it fails, not the worker
                return f"benchmark outputs rejected: {type(e).__name__}: {str(e)[:200]}", {}
        finally:
            remove_workdir(work)

    @activity.defn
    async def compare(self, request: CompareInput) -> BenchmarkOutcome:
        """Incumbent and candidate on the decision part, A B A B …; the relative improvement's bootstrap
        interval is paired by unit (a data file, a labelled example)."""
        measurement = await self.measure(
            MeasureInput(
                agent=request.agent,
                run_id=request.run_id,
                part="decision",
                commits=[request.incumbent, request.candidate],
                repeats=request.repeats,
                label="compare",
                limits=request.limits,
            )
        )
        if measurement.failures:
            commit, why = next(iter(measurement.failures.items()))
            raise ApplicationError(f"{commit[:10]}: {why}", type="BenchmarkFailed", non_retryable=True)
        per_run = json.loads(Path(measurement.units_path or "").read_text())
        spec = agent_spec(request.agent)
        a, b = _mean_units(per_run[request.incumbent]), _mean_units(per_run[request.candidate])
        keys = sorted(a)
        # Each look at this data spends part of the false-promotion allowance (policy.look_confidence).
        from activities.selfmod.decision_looks import record_look  # SQLAlchemy: loaded on first use

        data_version = self.dataset(request.agent, "decision").version()
        look = await self.kb.run(
            record_look, self.kb, request.agent, data_version, request.run_id, datetime.now(UTC)
        )
        interval = improvement_interval(
            [a[k] for k in keys],
            [b[k] for k in keys],
            spec.direction,
            confidence=look_confidence(look),
            seed=request.seed,
            kind=spec.improvement,
        )
        return BenchmarkOutcome(
            incumbent=measurement.figures[request.incumbent],
            candidate=measurement.figures[request.candidate],
            improvement=interval,
            runs=measurement.runs,
            log_path=measurement.units_path,
            look=look,
            data_version=data_version,
            bar=spec.threshold,
        )

    @activity.defn
    async def promote_version(self, request: PromoteInput) -> ActivePointer:
        """Make `commit` the active version (a no-op when it already is)."""

        def promote() -> ActivePointer:
            spec, repo = self.repository(request.agent)
            shipped = {path: shipped_text(path) for path in spec.source_files}
            code_changed = any(repo.read_file(request.commit, p) != text for p, text in shipped.items())
            try:
                return repo.promote(
                    request.commit,
                    request.by,
                    request.reason,
                    request.metric,
                    datetime.now(UTC),
                    request.expected,
                    code_changed,
                )
            except VersionConflict as e:
                raise ApplicationError(str(e), type=VERSION_CONFLICT, non_retryable=True) from e

        return await asyncio.to_thread(promote)

    @activity.defn
    async def rollback_version(self, request: RollbackInput) -> ActivePointer:
        def rollback() -> ActivePointer:
            _, repo = self.repository(request.agent)
            try:
                return repo.rollback(
                    request.by, request.reason, datetime.now(UTC), to=request.to, only_if=request.only_if
                )
            except VersionConflict as e:
                raise ApplicationError(str(e), type=VERSION_CONFLICT, non_retryable=True) from e
            except VersionStoreError as e:
                raise ApplicationError(str(e), type="RollbackRefused", non_retryable=True) from e

        return await asyncio.to_thread(rollback)

    @activity.defn
    async def active_agent_parameters(self, request: ActiveAgentInput) -> ActivePointer | None:
        """What the product runs, None for the shipped parameters: the active version someone chose, but
        for an agent without live code only one whose sources are this worker's (running_version.py)."""
        try:
            spec = agent_spec(request.agent)
        except ValueError as e:
            raise ApplicationError(str(e), type=BAD_AGENT, non_retryable=True) from e
        running = await asyncio.to_thread(running_version, self.root, spec, self.store())
        if running.waiting is not None:
            activity.logger.warning("%s: %s", spec.name, running.note())
        return running.pointer


def _mean_units(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = runs[0].keys()
    return {k: sum(r[k] for r in runs) / len(runs) for k in keys}


def _describe_change(before: dict[str, float], after: dict[str, float]) -> str:
    changed = [f"{k} {_g(before.get(k))} → {v:g}" for k, v in after.items() if before.get(k) != v]
    return ", ".join(changed) or "no change"


def _g(value: float | None) -> str:
    return "unset" if value is None else f"{value:g}"
