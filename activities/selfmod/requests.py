"""Starting self-modification from elsewhere: the autopilot's action for an agent short of its goal, and an
approved research experiment that names an agent.

The planner proposes the action for an `agent_below_goal` finding. The evolution guards itself (sandbox, a
decision on data the search never saw, approval for risky changes, a watch with rollback), so starting
one is low-risk. One that is already running is "nothing to do".
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from autarky.core.actions import ActionRequest, ActionResult
from autarky.core.settings import AutarkySettings
from autarky.selfmod import evolutions
from autarky.selfmod.types import StartedEvolution, StartEvolutionInput


class EvolutionRequestActivities:
    def __init__(self, settings: AutarkySettings) -> None:
        self.settings = settings

    @activity.defn(name="start_agent_evolution")
    async def start_agent_evolution(self, request: ActionRequest) -> ActionResult:
        agent = request.params.get("agent")
        if not agent:
            raise ApplicationError("an evolve_agent action needs the param 'agent'", non_retryable=True)
        try:
            handle = await evolutions.start_evolution(
                activity.client(),
                self.settings,
                agent,
                requested_by=f"autopilot:{request.action_id}",
                reason=request.reason,
            )
        except evolutions.EvolutionRefused as error:
            return ActionResult(success=True, nothing_to_do=True, detail=f"not started: {error}")
        # What the evolution decides is its own outcome, not this action's.
        return ActionResult(success=True, improvement_measured=False, detail=f"started {handle.id}")

    @activity.defn(name="start_evolution")
    async def start_evolution(self, request: StartEvolutionInput) -> StartedEvolution:
        """For an approved experiment that names an agent: start that agent's evolution."""
        try:
            handle = await evolutions.start_evolution(
                activity.client(),
                self.settings,
                request.agent,
                requested_by=request.requested_by,
                reason=request.reason,
                brief=request.brief,
            )
        except evolutions.EvolutionRefused as error:
            return StartedEvolution(refused=str(error))
        return StartedEvolution(workflow_id=handle.id)
