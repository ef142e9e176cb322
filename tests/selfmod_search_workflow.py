"""A workflow that runs the CMA-ES search in Temporal's sandbox (tests/test_selfmod_archive.py): the search's
lazy import of `cma` and numpy must work in workflow code once passed through, and its children replay."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from autarky.selfmod.cma_search import cma_children
    from autarky.selfmod.types import ParameterSpec

SPECS = [
    ParameterSpec(name="a", low=0.0, high=10.0),
    ParameterSpec(name="b", low=1.0, high=64.0, integer=True, log_scale=True),
]


def search(seed: int) -> list[dict[str, float]]:
    """Three generations of four children on a simple objective, from a fixed incumbent."""
    history: list[tuple[dict[str, float], float]] = [({"a": 2.0, "b": 4.0}, 0.0)]
    for _ in range(3):
        children = cma_children(history, SPECS, "max", seed, 4)
        history += [(child, -((child["a"] - 7) ** 2) - (child["b"] - 20) ** 2 / 100) for child in children]
    return [child for child, _ in history[1:]]


@workflow.defn(name="CmaSearchSandboxCheck")
class CmaSearchInSandbox:
    @workflow.run
    async def run(self, seed: int) -> list[dict[str, float]]:
        return search(seed)
