"""The runner of an agent's tests and self-test inside the sandbox, whose report — not an exit code the
candidate controls — is the verdict (activities/selfmod/candidate_tests.py judges it).

The worker lends this file read-only and starts it as a script (`python -P`), in a fresh work directory
where nothing of the candidate has run yet. Before any of the candidate's code is imported it reads the
run's key (a per-run nonce the worker wrote into the work directory) and empties that file, and opens
the report. It then runs pytest in this process with a plugin that records what was collected and every
test's outcome, or runs the harness's self-test, and only at the very end writes the report, signed with
the key (HMAC-SHA256: the key is never written anywhere the candidate could read it back). It then leaves
at once (`os._exit`), so nothing the candidate registered (atexit, threads) runs after the report.

A candidate that ends the process early (`os._exit(0)` at import, in a test or a thread) leaves no
report; one that raises SystemExit in a test fails that test; one that skips its module at import
collects fewer tests than the shipped sources do. Code running in this process can in principle reach
the key in memory: that is what the static checks and the sandbox are for. This is one layer of several.

    python -P testrunner.py tests --key-file K --report R -- FILE...    # run the tests
    python -P testrunner.py collect --key-file K --report R -- FILE...  # only collect them
    python -P testrunner.py self-test --key-file K --report R --agent A --params params.json

Imports only the standard library and pytest: nothing of the work directory, which the candidate can
write to, is imported before its tests or self-test start.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import sys
from pathlib import Path
from typing import Any

PASSED = "passed"
# pytest's options for the agent's tests: no conftest.py (one the candidate could have left in a work
# directory is never loaded), no cache; `-x` (stop at the first failure) when they run.
PYTEST_OPTIONS = ["-q", "-p", "no:cacheprovider", "--noconftest", "--rootdir=."]


def sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class Recorder:
    """A pytest plugin: what was collected, what failed to collect, and each test's outcome."""

    def __init__(self) -> None:
        self.collected: list[str] = []
        self.outcomes: dict[str, str] = {}
        self.collection_errors: list[str] = []
        self.deselected = 0

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collection_errors.append(f"{report.nodeid or '<session>'}: {_last_line(report.longrepr)}")
        elif report.skipped:
            self.collection_errors.append(f"{report.nodeid}: skipped at collection")

    def pytest_deselected(self, items: list[Any]) -> None:
        self.deselected += len(items)

    def pytest_collection_finish(self, session: Any) -> None:
        self.collected = [item.nodeid for item in session.items]

    def pytest_runtest_logreport(self, report: Any) -> None:
        # Worst outcome of a test's phases wins; only a call that passed makes it "passed".
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.passed else "xfailed"
        elif report.failed:
            outcome = "failed" if report.when == "call" else f"error in {report.when}"
        elif report.skipped:
            outcome = "skipped"
        elif report.when == "call":
            outcome = PASSED
        else:
            return
        if self.outcomes.get(report.nodeid, PASSED) == PASSED:
            self.outcomes[report.nodeid] = outcome


def _last_line(longrepr: object) -> str:
    lines = str(longrepr).strip().splitlines()
    return lines[-1][:300] if lines else ""


def run_pytest(files: list[str], collect_only: bool) -> dict[str, Any]:
    import pytest  # imported here: after the key is read, still before any test module

    recorder = Recorder()
    options = [*PYTEST_OPTIONS, "--collect-only"] if collect_only else [*PYTEST_OPTIONS, "-x"]
    status = pytest.main([*options, "--", *files], plugins=[recorder])
    return {
        "exit_status": int(status),
        "collected": recorder.collected,
        "outcomes": recorder.outcomes,
        "collection_errors": recorder.collection_errors,
        "deselected": recorder.deselected,
    }


def run_self_test(agent: str, params: Path) -> dict[str, Any]:
    try:
        from autarky.selfmod.harness import CHECKS  # the candidate's code is imported from here on

        CHECKS[agent](json.loads(params.read_text()))
    except BaseException as e:  # SystemExit from the harness's _require, or anything the candidate raised
        return {"self_test": f"{type(e).__name__}: {str(e)[:300]}"}
    return {"self_test": PASSED}


def read_key(path: Path) -> bytes:
    """The run's key, and the file emptied (and removed where it is not a mount point): nothing of the
    candidate, which runs later in this process, finds it there."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        key = bytes.fromhex(os.read(fd, 4096).decode().strip())
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        path.unlink()
    if len(key) < 16:
        raise SystemExit("the run's key is missing or too short")
    return key


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="testrunner.py")
    parser.add_argument("mode", choices=["tests", "collect", "self-test"])
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--agent")
    parser.add_argument("--params", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)  # the test files come after "--"
    args = parser.parse_args(argv[:cut])
    files = argv[cut + 1 :]
    key = read_key(args.key_file)
    report = os.open(args.report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    if args.mode == "self-test":
        body = run_self_test(args.agent, args.params)
    else:
        body = run_pytest(files, collect_only=args.mode == "collect")
    body.update(mode=args.mode, finished=True)
    data = json.dumps(body).encode()
    signed = memoryview(sign(key, data).encode() + b"\n" + data)
    while signed:
        signed = signed[os.write(report, signed) :]
    os.close(report)
    sys.stdout.flush()
    sys.stderr.flush()
    # At once: nothing the candidate registered (atexit handlers, threads) runs after the report.
    os._exit(0 if body.get("exit_status", 0) == 0 and body.get("self_test", PASSED) == PASSED else 1)


if __name__ == "__main__":
    main()
