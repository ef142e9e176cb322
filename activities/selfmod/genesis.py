"""Agent genesis activities: write a new agent (from its kind's template, or by the LLM to the template's
interface), try it in the sandbox (static checks, its tests and self-test by the signed runner, then its
figures on both data parts, judged here with the labels), and register it once a person approved.

The agent is tried from a version repository of this run's own (<data_dir>/agents/.genesis/<run>/), known
to this process only while it is tried (`registry.staged`); the shared one (knowledge base) is made at
registration, so nothing of an agent nobody approved reaches the other hosts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.selfmod import candidate_tests, genesis_registry
from activities.selfmod.activities import BAD_AGENT, SelfModActivities, heartbeating, safe_name
from activities.selfmod.candidate_tests import COLLECT, SELF_TEST, TESTS, ShippedTestsBroken
from activities.selfmod.evaluation import generated_dataset
from activities.selfmod.shipped import PROJECT_ROOT
from activities.selfmod.static_checks import static_check
from activities.selfmod.versions import AgentRepository
from activities.storage.handle import KnowledgeBaseHandle
from autarky.core.settings import AutarkySettings
from autarky.llm.types import LlmRequest
from autarky.selfmod.genesis import (
    SOURCE_SHOWN,
    GeneratedAgent,
    GenesisSpecError,
    check_paths,
    check_split,
    registry,
)
from autarky.selfmod.genesis_templates import from_template, interface_text
from autarky.selfmod.genesis_types import (
    GenerateInput,
    GenesisTrial,
    Registered,
    RegisterInput,
    TrialInput,
)

LLM_PURPOSE = "agent genesis"
SOURCE_MAX_TOKENS = 4000
SYSTEM = (
    "You write one Python module for Autarky, an agent that runs unattended in a sandbox. Keep to the "
    "interface you are given exactly; use only the standard library modules the reference imports."
)


class GeneratedSource(BaseModel):
    """The LLM's answer: the module's whole text."""

    summary: str = Field(description="one or two sentences: how this detector decides")
    source: str = Field(description="the whole Python module")


def source_request(agent: GeneratedAgent) -> LlmRequest:
    r = agent.request
    prompt = (
        f"Write the module {r.source_path} of a new agent, {r.name}.\n"
        f"Purpose: {r.purpose}\nMetric it watches: {r.metric_name}\nInputs: {r.inputs}\n"
        f"Outputs: {r.outputs}\nAlert on: {r.alert_on} values\n"
        f"It is judged by: {agent.spec.metric} on labelled data; goal {r.goal:g}.\n\n"
        "It must offer exactly what this reference implementation offers (DEFAULTS with the parameters "
        f"{', '.join(agent.defaults)}, class Detector(parameters) with update(value) -> score in [0, 1], "
        "check(parameters) and run(parameters, inputs)); its tests call them. Reference:\n\n"
        f"```python\n{interface_text(r)}\n```\n\n"
        f"Answer with `summary` and `source` (the whole module, no Markdown fences, at most {SOURCE_SHOWN} "
        "characters: a longer one is refused)."
    )
    return LlmRequest(system=SYSTEM, prompt=prompt, max_tokens=SOURCE_MAX_TOKENS, purpose=LLM_PURPOSE)


def _strip_fences(text: str) -> str:
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("```"):
        lines = lines[1:]
    if lines and lines[-1].startswith("```"):
        lines = lines[:-1]
    return "\n".join(lines) + "\n"


class GenesisActivities:
    def __init__(
        self,
        settings: AutarkySettings,
        environ: Mapping[str, str] = os.environ,
        kb: KnowledgeBaseHandle | None = None,
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.kb = kb or KnowledgeBaseHandle(settings.knowledge_db_url)
        self.selfmod = SelfModActivities(settings, environ, self.kb)  # its sandbox steps, reused

    @activity.defn
    async def generate_agent(self, request: GenerateInput) -> GeneratedAgent:
        """The agent's files: the template's, or its source written by the LLM (the template's tests)."""
        try:
            check_split(request.data, request.request.blocks)
            check_paths(request.request, lambda path: (PROJECT_ROOT / path).exists())
        except GenesisSpecError as e:
            raise ApplicationError(str(e), type=BAD_AGENT, non_retryable=True) from e
        agent = from_template(request.request, request.data)
        if not request.use_llm:
            return agent
        from activities.models.llm import LlmGateway

        gateway = LlmGateway.metered(self.settings.llm, self.settings.llm_environ(self.environ), self.kb)
        if gateway.offline:
            raise ApplicationError(
                'the spec asks for generator = "llm" but no LLM is configured (settings llm.*); '
                'set generator = "template" or run `autarky agents create --offline`',
                type="LlmNotConfigured",
                non_retryable=True,
            )
        answer = await gateway.complete(source_request(agent), GeneratedSource)
        return from_template(request.request, request.data, _strip_fences(answer.output.source))

    @activity.defn
    async def try_generated_agent(self, request: TrialInput) -> GenesisTrial:
        """Static checks, the tests and self-test in the sandbox (the signed runner's verdict), then the
        figures on the search and decision parts, judged here with the labels."""
        agent = request.agent

        def trial() -> GenesisTrial:
            with registry.staged(agent):
                return self._trial(agent, request)

        return await heartbeating(trial)

    def _trial(self, agent: GeneratedAgent, request: TrialInput) -> GenesisTrial:
        spec = agent.spec
        source = agent.files[spec.source_files[0]]
        if len(source) > SOURCE_SHOWN:  # the approval shows no more: nobody could see what they approve
            return GenesisTrial(
                passed=False,
                reason=f"its module is {len(source)} characters, more than the {SOURCE_SHOWN} the approval "
                "shows a person in full",
            )
        self.selfmod.require_tools("git", "ruff", "pytest")
        run_dir = self.selfmod.root / ".genesis" / safe_name(request.run_id)
        repo = AgentRepository(run_dir / "versions", spec.name)  # this run's own, not shared
        sources = {p: agent.files[p] for p in spec.source_files}
        commit = repo.ensure(sources, agent.defaults, datetime.now(UTC)).commit
        problem = static_check(spec, repo.files(commit))
        if problem:
            return GenesisTrial(passed=False, reason=f"static check: {problem}")
        log = run_dir / "test.log"
        step = self.selfmod._runner_step
        try:
            expected = candidate_tests.expected_tests(
                spec, PROJECT_ROOT, lambda: step(COLLECT, spec, repo, commit, request.limits, None)[1]
            )
        except ShippedTestsBroken as e:
            return GenesisTrial(passed=False, reason=f"its tests do not collect: {e}")
        runs = 1
        with log.open("w") as out:
            for name in (TESTS, SELF_TEST):
                runs += 1
                problem, _ = step(name, spec, repo, commit, request.limits, out, expected)
                if problem:
                    return GenesisTrial(
                        passed=False, reason=f"{name}: {problem}", log_path=str(log), sandbox_runs=runs
                    )
        figures = {}
        for part in ("search", "decision"):
            dataset = generated_dataset(agent, part)
            data = run_dir / "datasets" / part
            dataset.write_inputs(data)
            runs += 1
            problem, units = self.selfmod._run_once(spec, repo, commit, data, dataset, request.limits)
            if problem:
                return GenesisTrial(
                    passed=False, reason=f"{part} part: {problem}", log_path=str(log), sandbox_runs=runs
                )
            figures[part] = sum(units.values())
        return GenesisTrial(passed=True, log_path=str(log), figures=figures, sandbox_runs=runs)

    @activity.defn
    async def register_generated_agent(self, request: RegisterInput) -> Registered:
        """Register the approved agent in the knowledge base and make its shared version repository."""

        def register() -> Registered:
            agent = request.agent.model_copy(
                update={
                    "registered_by": request.by,
                    "registered_at": datetime.now(UTC),
                    "genesis_run": request.run_id,  # a retry of this activity finds its own row
                }
            )
            from activities.selfmod import genesis_store  # SQLAlchemy: only when one is registered

            genesis_registry.install(self.kb)
            fresh = genesis_store.save(self.kb, agent)
            name = agent.spec.name
            _, repo = self.selfmod.repository(name)  # bootstraps its versions from the registered files
            return Registered(name=name, commit=repo.active().commit, already=not fresh)

        return await asyncio.to_thread(register)
