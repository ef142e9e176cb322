"""The verdict on a candidate's tests and self-test: read from the signed report of the trusted runner
(autarky/selfmod/testrunner.py), never from an exit code the candidate controls.

Each run gets its own key (32 random bytes) in a file of its fresh work directory; the runner reads and
empties it before any of the candidate's code runs, and signs its report with it. The runner is lent
read-only (/data/runner) and started with `python -P`, so the candidate cannot change or shadow it. The
worker then requires: the report exists and is a regular file of bounded size, its signature holds, the
session finished, nothing failed to collect or was deselected, the tests collected are exactly those the
same test files collect against the shipped sources (collected once per agent and runner version, in the
sandbox), and every one of them passed. A candidate that exits early, skips its module or raises
SystemExit in a test fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.selfmod.evaluation import BadOutputs, read_own_file
from activities.selfmod.sandbox import DATA_ROOT
from activities.selfmod.shipped import shipped_text
from autarky.selfmod import testrunner
from autarky.selfmod.types import AgentSpec

TESTS, COLLECT, SELF_TEST = "tests", "collect", "self-test"
KEY_FILE = ".autarky-test-key"
REPORT_FILE = ".autarky-test-report"
REPORT_MAX_BYTES = 1024 * 1024  # a few hundred test ids and outcomes are far less
RUNNER_DIR = Path(testrunner.__file__).resolve().parent
RUNNER = f"{DATA_ROOT}/runner/{Path(testrunner.__file__).name}"

# pytest's exit statuses for a session that did not run to its end (pytest.ExitCode).
STOPPED = {2: "was interrupted", 3: "hit an internal error", 4: "was misused"}

_expected: dict[str, list[str]] = {}
_expected_lock = threading.Lock()


class ShippedTestsBroken(RuntimeError):
    """The shipped sources' tests do not collect in the sandbox: this installation's fault, not a
    candidate's (a missing test dependency, say)."""


@dataclass
class RunnerCall:
    """One start of the runner in a work directory: its command, what to lend it, and its key."""

    mode: str
    work: Path
    command: list[str]
    key: bytes = field(repr=False)

    @property
    def lent(self) -> dict[str, Any]:
        """run_sandboxed's arguments: the runner's directory read-only; the key and the report writable
        through (the runner empties the key file once read)."""
        return {"data": {"runner": RUNNER_DIR}, "outputs": [KEY_FILE, REPORT_FILE]}


def prepare(mode: str, work: Path, python: str, spec: AgentSpec) -> RunnerCall:
    """Write the run's key into `work` (a fresh work directory) and build the runner's command."""
    key = secrets.token_bytes(32)
    fd = os.open(work / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    command = [python, "-P", RUNNER, mode, "--key-file", KEY_FILE, "--report", REPORT_FILE]
    if mode == SELF_TEST:
        command += ["--agent", spec.name, "--params", "params.json"]
    else:
        command += ["--", *spec.test_files]
    return RunnerCall(mode, work, command, key)


def read_report(call: RunnerCall) -> dict[str, Any] | str:
    """The report's body, or why there is none that can be trusted."""
    try:
        raw = read_own_file(call.work / REPORT_FILE, REPORT_MAX_BYTES)
    except FileNotFoundError:
        raw = b""
    except BadOutputs as e:
        return f"the test runner's report is unusable: {e}"
    if not raw:  # the sandbox declares it as an empty file
        return "the test runner wrote no report (the process ended before its session did)"
    mac, _, body = raw.partition(b"\n")
    if not hmac.compare_digest(mac, testrunner.sign(call.key, body).encode()):
        return "the test runner's report is not signed with this run's key"
    try:
        parsed = json.loads(body)
    except ValueError as e:
        return f"the test runner's report does not parse: {e}"
    if not isinstance(parsed, dict) or parsed.get("mode") != call.mode or parsed.get("finished") is not True:
        return "the test runner's report is not that of a finished session"
    return parsed


def tests_problem(report: dict[str, Any], expected: list[str]) -> str | None:
    """None when exactly the expected tests were collected and every one passed."""
    if report.get("collection_errors"):
        errors = report["collection_errors"]
        return f"{len(errors)} collection error(s), e.g. {str(errors[0])[:300]}"
    if report.get("exit_status") in STOPPED:
        return f"pytest's session {STOPPED[report['exit_status']]} (exit status {report['exit_status']})"
    if report.get("deselected"):
        return f"{report['deselected']} test(s) deselected"
    collected = report.get("collected")
    if not isinstance(collected, list) or sorted(collected) != sorted(expected):
        count = len(collected) if isinstance(collected, list) else 0
        missing = sorted(set(expected) - set(collected or []))
        hint = f", e.g. {missing[0]} is missing" if missing else ""
        return f"collected {count} tests where the shipped sources collect {len(expected)}{hint}"
    outcomes = report.get("outcomes")
    outcomes = outcomes if isinstance(outcomes, dict) else {}
    for test in expected:
        outcome = outcomes.get(test, "not run")
        if outcome != testrunner.PASSED:
            return f"{test}: {outcome}"
    if report.get("exit_status") != 0:
        return f"pytest ended with status {report.get('exit_status')}"
    return None


def self_test_problem(report: dict[str, Any]) -> str | None:
    outcome = report.get("self_test")
    return None if outcome == testrunner.PASSED else str(outcome)[:300]


def expected_tests(spec: AgentSpec, project_root: Path, collect: Callable[[], list[str]]) -> list[str]:
    """The test ids the agent's test files collect against the shipped sources; `collect()` runs the
    runner's `collect` in the sandbox the first time for these files, sources and runner."""
    digest = hashlib.sha256(spec.name.encode())
    for path in sorted({*spec.test_files, *spec.source_files}):
        digest.update(path.encode() + b"\0" + shipped_text(path).encode())  # genesis: not in this tree
    digest.update(Path(testrunner.__file__).read_bytes())
    key = digest.hexdigest()
    with _expected_lock:  # concurrent checks of one agent collect once
        if key not in _expected:
            found = collect()
            if not found:
                raise ShippedTestsBroken(
                    f"the tests of {spec.name} ({', '.join(spec.test_files)}) collect none"
                )
            _expected[key] = found
        return list(_expected[key])


def collected(report: dict[str, Any] | str, spec: AgentSpec) -> list[str]:
    """The ids in a `collect` report of the shipped sources; ShippedTestsBroken when there are none."""
    if isinstance(report, str):
        raise ShippedTestsBroken(f"the shipped tests of {spec.name} could not be collected: {report}")
    if report.get("collection_errors"):
        raise ShippedTestsBroken(
            f"the shipped tests of {spec.name} do not collect in the sandbox (a test dependency missing? "
            f"pytest and hypothesis are Autarky dependencies): {report['collection_errors'][0]}"
        )
    return [str(test) for test in report.get("collected") or []]
