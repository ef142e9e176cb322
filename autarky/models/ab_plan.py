"""Planning a group-sequential A/B test: its boundaries are computed once, when the test begins, by an
activity (numerical integration with numpy, which workflow code does not load), and kept in its state.

The stub below is what the workflow schedules, typed; the implementation is
activities/models/abtest_plan.py (tests/test_activity_contract.py keeps the two equal)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity

from autarky.models.ab_types import Direction
from autarky.models.group_sequential import GroupSequentialPlan


class PlanRequest(BaseModel):
    alpha: float = Field(gt=0, lt=0.5)
    min_improvement: float = Field(gt=0)
    direction: Direction
    looks: int = Field(10, ge=1, le=20)


@activity.defn(name="plan_model_abtest")
async def plan_model_abtest(request: PlanRequest) -> GroupSequentialPlan:
    raise NotImplementedError("activities/models/abtest_plan.py")
