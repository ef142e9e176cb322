"""Inputs, results and activity stubs of agent genesis (workflows/agent_genesis.py); the implementations are
in activities/selfmod/genesis.py."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import activity

from autarky.selfmod.genesis import GeneratedAgent, GenesisSpec, LabelledSeries
from autarky.selfmod.types import SandboxLimits

CHANCE = 50.0  # balanced accuracy of a detector that knows nothing


def genesis_workflow_id(name: str) -> str:
    return f"genesis/{name}"


class GenesisInput(BaseModel):
    request: GenesisSpec
    data: LabelledSeries
    offline: bool = False  # the template even when the spec asks for the LLM
    requested_by: str = "cli"
    approval_timeout: timedelta = timedelta(days=3)
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    activity_task_queue: str = "autarky-research"


class GenerateInput(BaseModel):
    request: GenesisSpec
    data: LabelledSeries
    use_llm: bool
    run_id: str


class TrialInput(BaseModel):
    agent: GeneratedAgent
    run_id: str
    limits: SandboxLimits = Field(default_factory=SandboxLimits)


class GenesisTrial(BaseModel):
    """The generated agent's tests and self-test in the sandbox, then its figures on both parts."""

    passed: bool
    reason: str = ""
    log_path: str | None = None
    figures: dict[str, float] = Field(default_factory=dict)  # part → balanced accuracy (%)
    sandbox_runs: int = 0


class RegisterInput(BaseModel):
    agent: GeneratedAgent
    by: str
    run_id: str


class Registered(BaseModel):
    name: str
    commit: str  # its first version in its version repository
    already: bool = False  # one of that name was registered before: that one stands


class GenesisResult(BaseModel):
    name: str
    status: str  # registered, rejected, failed, not_registered
    origin: str = ""
    figures: dict[str, float] = Field(default_factory=dict)
    commit: str | None = None
    message: str = ""


_IN = "activities/selfmod/genesis.py (GenesisActivities)"


@activity.defn(name="generate_agent")
async def generate_agent(request: GenerateInput) -> GeneratedAgent:
    raise NotImplementedError(_IN)


@activity.defn(name="try_generated_agent")
async def try_generated_agent(request: TrialInput) -> GenesisTrial:
    raise NotImplementedError(_IN)


@activity.defn(name="register_generated_agent")
async def register_generated_agent(request: RegisterInput) -> Registered:
    raise NotImplementedError(_IN)
