"""The contract every action speaks: the autopilot sends an `ActionRequest`, the activity or child
workflow that carries it out answers an `ActionResult`."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ActionRequest(BaseModel):
    """The one input every action (activity or child workflow) takes."""

    action_id: str
    action_type: str
    params: dict[str, str] = Field(default_factory=dict)
    reason: str = ""
    host: str | None = None


class ActionResult(BaseModel):
    """What an action reports; `improvement` is measured, in [0, 1]."""

    success: bool
    improvement: float = Field(0.0, ge=0, le=1)
    detail: str = ""
    # The action measures no improvement (e.g. a notification): its outcome teaches success only.
    improvement_measured: bool = True
    # There was nothing to act on (e.g. an empty pool): the outcome teaches nothing.
    nothing_to_do: bool = False
