"""Planning a group-sequential A/B test (the stub the workflow schedules: autarky/models/ab_plan.py)."""

from __future__ import annotations

import asyncio
import functools

from temporalio import activity

from autarky.models.ab_plan import PlanRequest
from autarky.models.ab_types import Direction
from autarky.models.group_sequential import GroupSequentialPlan, plan_group_sequential
from autarky.models.sequential import SequentialDesign


@activity.defn(name="plan_model_abtest")
async def plan_model_abtest(request: PlanRequest) -> GroupSequentialPlan:
    """Pure computation (about a second of numpy, in a thread): an activity to keep numpy out of workflows."""
    arguments = (request.alpha, request.min_improvement, request.direction, request.looks)
    return await asyncio.to_thread(_plan, *arguments)


@functools.lru_cache(maxsize=32)  # tests of one design share it: the plan depends on nothing else
def _plan(alpha: float, min_improvement: float, direction: Direction, looks: int) -> GroupSequentialPlan:
    design = SequentialDesign(alpha=alpha, min_relative_improvement=min_improvement, direction=direction)
    return plan_group_sequential(design, looks=looks)
