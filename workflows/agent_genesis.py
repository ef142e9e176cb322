"""`AgentGenesisWorkflow`: a new evolvable agent from a spec (`autarky agents create SPEC.toml`).

1. Generate its source and tests (the kind's template offline, or the LLM to the template's interface).
2. Try it in the sandbox: static checks, its tests and self-test (the signed runner's verdict), then its
   figures on the search and decision parts of the spec's labelled data, judged outside the sandbox.
3. An agent that fails, or does no better than chance on the decision part, is not registered.
4. Otherwise a person decides, shown the figures and the whole generated code (as a code block; a module
   longer than the approval shows was refused at step 2); only then is it registered in the knowledge
   base, listed by `autarky agents` and evolvable like the declared agents.

The ID is `genesis/<name>`; the UI shows the step and the figures as current details, like an evolution.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.approval import ApprovalGate

with workflow.unsafe.imports_passed_through():
    from autarky.core import search_attributes as sa
    from autarky.core.approval import ApprovalState
    from autarky.selfmod.genesis import SOURCE_SHOWN, GeneratedAgent
    from autarky.selfmod.genesis_types import (
        CHANCE,
        GenerateInput,
        GenesisInput,
        GenesisResult,
        GenesisTrial,
        Registered,
        RegisterInput,
        TrialInput,
        generate_agent,
        register_generated_agent,
        try_generated_agent,
    )

KIND = "genesis"
CODE_SHOWN = SOURCE_SHOWN  # characters of the generated source in the approval (a longer one is refused)
RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["BadAgent", "LlmNotConfigured"])


def shown_code(text: str, limit: int = CODE_SHOWN) -> str:
    """Code as a fenced block that no text inside it can close (a fence longer than any run of
    backticks in it), cut at `limit` characters."""
    cut = text if len(text) <= limit else text[:limit] + f"\n# … {len(text) - limit} more characters"
    longest, run = 0, 0
    for ch in cut:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}python\n{cut}\n{fence}"


@workflow.defn
class AgentGenesisWorkflow(ApprovalGate):
    @workflow.init
    def __init__(self, request: GenesisInput) -> None:
        self._init_approval_gate([])
        self._request = request
        self._step = "starting"
        self._figures: dict[str, float] = {}

    @workflow.query
    def progress(self) -> dict[str, object]:
        return {"step": self._step, "figures": self._figures}

    @workflow.run
    async def run(self, request: GenesisInput) -> GenesisResult:
        name = request.request.name
        workflow.upsert_search_attributes(
            [sa.KIND.value_set(KIND), sa.AGENT.value_set(name), sa.DECISION.value_set("running")]
        )
        result = GenesisResult(name=name, status="running")
        try:
            return await self._genesis(request, result)
        except ActivityError as error:
            return self._end(result, "failed", f"{self._step}: {_why(error)}")

    async def _genesis(self, request: GenesisInput, result: GenesisResult) -> GenesisResult:
        info = workflow.info()
        run_id = f"{info.workflow_id}@{info.run_id[:8]}"
        use_llm = request.request.generator == "llm" and not request.offline
        self._show(f"writing the agent ({'LLM' if use_llm else 'template ' + request.request.kind})")
        agent: GeneratedAgent = await self._activity(
            generate_agent,
            GenerateInput(request=request.request, data=request.data, use_llm=use_llm, run_id=run_id),
            timedelta(minutes=10),
        )
        result.origin = agent.origin
        self._show("running its tests in the sandbox and judging it on its data")
        trial: GenesisTrial = await self._activity(
            try_generated_agent,
            TrialInput(agent=agent, run_id=run_id, limits=request.limits),
            timedelta(minutes=10) + 6 * timedelta(seconds=request.limits.wall_seconds),
            heartbeat=True,
        )
        self._figures = result.figures = trial.figures
        if not trial.passed:
            return self._end(result, "failed", f"the generated agent fails: {trial.reason}")
        decision = trial.figures["decision"]
        figures = (
            f"{agent.spec.metric}: search part {trial.figures['search']:.2f}, decision part "
            f"{decision:.2f} (goal {agent.request.goal:g}, chance {CHANCE:g})"
        )
        if decision <= CHANCE:
            return self._end(result, "not_registered", f"no better than chance on unseen data: {figures}")

        self._show("waiting for approval")
        source = agent.files[agent.spec.source_files[0]]
        approval_id = f"register-{agent.spec.name}"
        self.request_approval(
            approval_id,
            subject=f"register the new agent {agent.spec.name} ({agent.origin})",
            why=(
                f"{agent.request.purpose}\n\n{figures}; its tests passed in the sandbox.\n"
                f"It may change only {', '.join(agent.spec.source_files)}; tests "
                f"{', '.join(agent.spec.test_files)}.\n\n{shown_code(source)}"
            ),
            timeout=request.approval_timeout,
            risk=0.8 if agent.origin == "llm" else 0.5,
        )
        decided = await self.wait_for_decision(approval_id)
        if decided.state != ApprovalState.APPROVED:
            return self._end(result, "rejected", f"registration {decided.state.value}: {figures}")

        self._show("registering")
        registered: Registered = await self._activity(
            register_generated_agent,
            RegisterInput(
                agent=agent, by=f"{info.workflow_id} approved by {decided.decided_by}", run_id=run_id
            ),
            timedelta(minutes=2),
        )
        result.commit = registered.commit
        if registered.already:
            return self._end(result, "failed", f"an agent {agent.spec.name} was registered meanwhile")
        return self._end(result, "registered", f"{figures}; `autarky evolve {agent.spec.name}` evolves it")

    async def _activity(self, fn, arg, allowed: timedelta, heartbeat: bool = False):
        return await workflow.execute_activity(
            fn,
            arg,
            task_queue=self._request.activity_task_queue,
            start_to_close_timeout=allowed,
            heartbeat_timeout=timedelta(seconds=30) if heartbeat else None,
            retry_policy=RETRY,
            summary=f"{fn.__name__.replace('_', ' ')} · {self._request.request.name}",
        )

    def _show(self, step: str) -> None:
        self._step = step
        figures = ", ".join(f"{k} {v:.2f}" for k, v in self._figures.items()) or "—"
        workflow.set_current_details(
            f"**genesis of {self._request.request.name}**: {step} · figures {figures}"
        )

    def _end(self, result: GenesisResult, status: str, message: str) -> GenesisResult:
        result.status, result.message = status, message
        self._show(f"{status}: {message}")
        workflow.upsert_search_attributes([sa.DECISION.value_set(status)])
        workflow.upsert_memo({"status": status, "message": message})
        return result


def _why(error: ActivityError) -> str:
    cause = error.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or error)
