"""A candidate cannot fake its tests: the real SelfModActivities.check_candidate on a real agent repository,
real bubblewrap, judged by the trusted runner's signed report (activities/selfmod/candidate_tests.py).

Each way out is tried twice where it can be: as the LLM would write it (the static check refuses what it
can see) and with the static check out of the way, to show that the report alone still holds.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

import activities.selfmod.activities as selfmod_activities
from activities.selfmod import candidate_tests
from activities.selfmod.activities import PROJECT_ROOT, SelfModActivities
from activities.selfmod.versions import AgentRepository
from autarky.core.settings import AutarkySettings
from autarky.selfmod.agents import RELEVANCE_SCORER, default_parameters
from autarky.selfmod.types import CandidateOrigin, CheckInput, CheckOutcome, SandboxLimits
from tests.test_self_modify import patch_of

AGENT = RELEVANCE_SCORER.name
SOURCE = RELEVANCE_SCORER.source_files[0]
LIMITS = SandboxLimits(cpu_seconds=120, wall_seconds=120)
SATURATE = "    n = params.steepness\n    return x**n / (x**n + params.half**n)"


def at_import(code: str) -> str:
    """A patch adding `code` to the module's top level, after its imports."""
    return patch_of("import re\n", f"import re\n{code}\n")


# Scores everything 1.0: the calibration tests fail.
BROKEN = patch_of(SATURATE, "    return 1.0")
GENUINE = patch_of(SATURATE, "    n = params.steepness\n    return 1.0 / (1.0 + (params.half / x) ** n)")
# The demonstrated bypass: a broken scorer that ends the test process with success under pytest.
THREADING_TRICK = patch_of(
    SATURATE,
    '    return 1.0\n\n\nif "_pytest" in threading._sys.modules:\n    threading._os._exit(0)',
)


class Checker:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = AutarkySettings(data_dir=tmp_path / "data")
        self.repo = AgentRepository(self.settings.data_dir / "agents", AGENT)
        now = datetime.now(UTC)
        self.repo.ensure({SOURCE: (PROJECT_ROOT / SOURCE).read_text()}, default_parameters(AGENT), now)
        self.acts = SelfModActivities(self.settings)

    async def check(self, patch: str, key: str = "c") -> CheckOutcome:
        candidate = self.repo.create_candidate(
            self.repo.active().commit,
            key,
            "fake-test",
            default_parameters(AGENT),
            patch,
            CandidateOrigin.LLM,
            key,
        )
        return await self.acts.check_candidate(
            CheckInput(agent=AGENT, run_id="fake-test", candidate=candidate, limits=LIMITS)
        )


@pytest.fixture
def checker(tmp_path: Path) -> Checker:
    return Checker(tmp_path)


@pytest.fixture
def no_static_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The static check out of the way: what is left is the sandbox and the runner's report."""
    monkeypatch.setattr(selfmod_activities, "static_check", lambda spec, files: None)


async def test_a_genuine_candidate_passes_on_the_runners_report(checker: Checker) -> None:
    outcome = await checker.check(GENUINE)
    assert outcome.passed, outcome.reason
    log = Path(outcome.log_path or "").read_text()
    assert "testrunner.py tests" in log and "testrunner.py self-test" in log


async def test_a_broken_candidate_fails_naming_the_test(checker: Checker) -> None:
    outcome = await checker.check(BROKEN)
    assert not outcome.passed
    assert outcome.reason.startswith("tests: ") and "test_relevance.py::" in outcome.reason
    assert "failed" in outcome.reason


async def test_the_threading_trick_is_refused_by_the_static_check(checker: Checker) -> None:
    outcome = await checker.check(THREADING_TRICK)
    assert not outcome.passed
    assert outcome.reason.startswith("static check: ") and "which no candidate may" in outcome.reason


# Fakes the static check lets through (no import, no private name): the report alone refuses them.
VISIBLE_FAKES = {
    "SystemExit(0) at import": (
        patch_of(SATURATE, f"{SATURATE}\n\n\nraise SystemExit(0)"),
        "internal error",
    ),
    "SystemExit(0) in every test": (patch_of(SATURATE, "    raise SystemExit(0)"), "failed"),
}

# Fakes only code past the static check could write: the report refuses them too.
HIDDEN_FAKES = {
    "threading trick": (THREADING_TRICK, "wrote no report"),
    "os._exit(0) at import": (at_import("import os\nos._exit(0)"), "wrote no report"),
    "os._exit(0) from a thread mid-session": (
        at_import(
            "import os\nimport threading\nimport time\n\n\ndef _leave() -> None:\n    time.sleep(0.5)\n"
            "    os._exit(0)\n\n\nthreading.Thread(target=_leave, daemon=True).start()"
        ),
        "wrote no report",
    ),
    "pytest.skip at import": (
        at_import("import pytest\npytest.skip('nothing to see', allow_module_level=True)"),
        "skipped at collection",
    ),
    "a report forged with the key file's contents": (
        at_import(
            "import hashlib\nimport hmac\nimport os\n"
            "_key = bytes.fromhex(open('.autarky-test-key').read() or '00')\n"
            '_body = b\'{"mode": "tests", "finished": true, "collected": [], "exit_status": 0}\'\n'
            "_mac = hmac.new(_key, _body, hashlib.sha256).hexdigest().encode()\n"
            "open('.autarky-test-report', 'wb').write(_mac + b'\\n' + _body)\n"
            "os._exit(0)"
        ),
        "not signed with this run's key",
    ),
}


@pytest.mark.parametrize("how", sorted(VISIBLE_FAKES))
async def test_a_fake_the_static_check_allows_fails_on_the_report(checker: Checker, how: str) -> None:
    patch, why = VISIBLE_FAKES[how]
    outcome = await checker.check(patch)
    assert not outcome.passed
    assert outcome.reason.startswith("tests: ") and why in outcome.reason, outcome.reason


@pytest.mark.parametrize("how", sorted(HIDDEN_FAKES))
async def test_a_fake_past_the_static_check_fails_on_the_report(
    checker: Checker, no_static_check: None, how: str
) -> None:
    patch, why = HIDDEN_FAKES[how]
    outcome = await checker.check(patch)
    assert not outcome.passed
    assert outcome.reason.startswith("tests: ") and why in outcome.reason, outcome.reason


async def test_the_self_test_is_judged_by_its_report_too(checker: Checker, no_static_check: None) -> None:
    """A candidate that passes its tests but leaves with success in the harness's self-test."""
    patch = at_import("import os\nimport sys\nif 'autarky.selfmod.harness' in sys.modules:\n    os._exit(0)")
    outcome = await checker.check(patch)
    assert not outcome.passed
    assert outcome.reason.startswith("self-test: ") and "wrote no report" in outcome.reason


def test_a_report_is_judged_against_the_shipped_collection() -> None:
    expected = ["t.py::a", "t.py::b"]
    passed = {"a": "passed", "b": "passed"}
    report = {
        "collected": expected,
        "outcomes": {f"t.py::{k}": v for k, v in passed.items()},
        "exit_status": 0,
    }
    assert candidate_tests.tests_problem(report, expected) is None
    fewer = {**report, "collected": expected[:1]}
    assert "collected 1 tests where the shipped sources collect 2" in str(
        candidate_tests.tests_problem(fewer, expected)
    )
    skipped = {**report, "outcomes": {"t.py::a": "passed", "t.py::b": "skipped"}}
    assert candidate_tests.tests_problem(skipped, expected) == "t.py::b: skipped"
    not_run = {**report, "outcomes": {"t.py::a": "passed"}}
    assert candidate_tests.tests_problem(not_run, expected) == "t.py::b: not run"
    assert "deselected" in str(candidate_tests.tests_problem({**report, "deselected": 1}, expected))


async def test_without_ruff_the_check_fails_once_naming_the_install(
    checker: Checker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain install without ruff: not a FileNotFoundError retried three times."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "git")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python-without-ruff" / "python"))
    with pytest.raises(ApplicationError) as raised:
        await checker.check(GENUINE)
    assert raised.value.non_retryable and raised.value.type == "ToolMissing"
    assert "ruff is missing" in str(raised.value) and "pip install ruff" in str(raised.value)
