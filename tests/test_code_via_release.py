"""Code that runs is code that was measured (issue 30, item 4): the anomaly detector runs in the
autopilot's workflow code, so the product runs a version's parameters only with the sources they were
measured with. A promoted version whose code differs from this worker's waits for a release (a worker
built from its code); meanwhile the newest version with this worker's code runs, or the shipped defaults.
The real activity on the real version store (the knowledge base of the data directory)."""

from __future__ import annotations

import difflib
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.selfmod.activities import PROJECT_ROOT, SelfModActivities
from activities.selfmod.versions import AgentRepository
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import ANOMALY_DETECTOR, default_parameters
from autarky.selfmod.types import ActiveAgentInput, ActivePointer, CandidateOrigin
from tests.test_cli import cli, table_rows

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

AGENT = ANOMALY_DETECTOR.name
SOURCE = ANOMALY_DETECTOR.source_files[0]
SHIPPED = (PROJECT_ROOT / SOURCE).read_text()
FIRST_LINE = '"""Streaming anomaly detection for one metric: each value in, an anomaly score in [0, 1] out.'
EVOLVED = SHIPPED.replace(FIRST_LINE, FIRST_LINE[:-1] + " Evolved.", 1)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def patch(before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{SOURCE}", f"b/{SOURCE}"
    )
    return "".join(lines)


class Stack:
    """The agent's version store and the activity the autopilot reads it with, on one data directory."""

    def __init__(self, tmp_path: Path, bootstrap_source: str = SHIPPED) -> None:
        assert EVOLVED != SHIPPED
        self.selfmod = SelfModActivities(AutarkySettings(data_dir=tmp_path))
        self.repo = AgentRepository(tmp_path / "agents", AGENT, self.selfmod.store())
        self.repo.ensure({SOURCE: bootstrap_source}, default_parameters(AGENT), NOW)
        self.source = bootstrap_source

    def promote(self, window: float, source: str | None = None) -> str:
        """Promote a version with `window` on top of the active one; with `source`, an LLM patch to it."""
        base = self.repo.active().commit
        diff = None if source is None or source == self.source else patch(self.source, source)
        origin = CandidateOrigin.LLM if diff else CandidateOrigin.MUTATION
        parameters = {**default_parameters(AGENT), "window": window}
        key = f"w{int(window)}"
        made = self.repo.create_candidate(base, key, "test", parameters, diff, origin, key)
        self.source = source or self.source
        changed = self.source != SHIPPED
        return self.repo.promote(made.commit, "test", "promoted", None, NOW, code_changed=changed).commit

    async def applied(self) -> ActivePointer | None:
        """What the autopilot's read returns, run as an activity (its log included)."""
        read = self.selfmod.active_agent_parameters
        return await ActivityEnvironment().run(read, ActiveAgentInput(agent=AGENT))


async def test_a_version_with_other_code_waits_and_the_last_same_code_version_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stack = Stack(tmp_path)
    same_code = stack.promote(256.0)
    applied = await stack.applied()  # a version with this worker's code: applied as before
    assert applied is not None and applied.commit == same_code and applied.parameters["window"] == 256.0

    other_code = stack.promote(512.0, EVOLVED)  # an LLM version: its parameters were measured with EVOLVED
    assert stack.repo.active().commit == other_code
    with caplog.at_level(logging.WARNING):
        applied = await stack.applied()
    assert applied is not None and applied.commit == same_code and applied.parameters["window"] == 256.0
    waits = f"version {other_code[:12]} waits for a release: its code differs from this worker's"
    assert waits in caplog.text

    # A later version on the evolved code waits as well; the same-code one still runs.
    later = stack.promote(1024.0, EVOLVED)
    applied = await stack.applied()
    assert applied is not None and applied.commit == same_code

    code, out = await cli(None, "agents", AUTARKY_DATA_DIR=str(tmp_path))
    assert code == 0, out
    rows = {row[0]: row for row in table_rows(out) if row[0]}
    assert rows["relevance-scorer"][1] == "not evolved yet", out
    version_column = " ".join(row[1] for row in table_rows(out))  # the note wraps over lines
    assert (
        f"{later[:10]} version {later[:12]} waits for a release: its code differs from this worker's "
        f"(runs version {same_code[:12]} meanwhile)"
    ) in version_column, out


async def test_without_a_same_code_version_the_shipped_defaults_run(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    other_code = stack.promote(512.0, EVOLVED)
    assert stack.repo.active().commit == other_code
    assert await stack.applied() is None  # the shipped parameters, on the shipped code

    back = stack.repo.rollback("test", "undo", NOW)  # a person chose the first version: it runs again
    applied = await stack.applied()
    assert applied is not None and applied.commit == back.commit
    assert applied.parameters == default_parameters(AGENT)


async def test_a_worker_built_from_the_version_code_runs_it(tmp_path: Path) -> None:
    # The store was bootstrapped by an older release shipping other detector code (EVOLVED here); a version
    # whose sources are this worker's (an LLM patch to what ships now) runs, with its parameters.
    stack = Stack(tmp_path, bootstrap_source=EVOLVED)
    old_code = stack.promote(256.0)  # parameters measured with the older release's code
    assert stack.repo.active().commit == old_code
    assert await stack.applied() is None
    this_code = stack.promote(512.0, SHIPPED)
    applied = await stack.applied()
    assert applied is not None and applied.commit == this_code and applied.parameters["window"] == 512.0
