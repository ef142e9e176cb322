"""The CLI's exit code is its own: interpreter teardown (where the SDK's native bridge can abort a
short-lived process, temporalio/sdk-python#300) never runs after `autarky.cli.main`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from autarky.cli.main import run_cli
from tests.test_cli import cli, cli_environ
from tests.test_cli_approvals import REASON_MISSING, asking

RUNS = 20
AT_ONCE = 4


async def test_a_refused_approve_exits_1_every_time(env: WorkflowEnvironment, client: Client) -> None:
    async with asking(client) as [(handle, approval_id)]:
        refused = f"refused: no approval with id 'apr-nope' in this workflow (pending: {approval_id})\n"
        gate = asyncio.Semaphore(AT_ONCE)

        async def once() -> tuple[int, str]:
            async with gate:
                return await cli(env, "approve", "apr-nope", "--reason", "typo", "--workflow", handle.id)

        results = await asyncio.gather(*(once() for _ in range(RUNS)))
    codes = [code for code, _ in results]
    assert codes == [1] * RUNS, [r for r in results if r[0] != 1][:1]  # never 134 (abort) or -11 (segfault)
    assert {out for _, out in results} == {refused}


CRASH_AT_TEARDOWN = """
import atexit, os, signal, sys
from autarky.cli.main import main, run_cli
atexit.register(lambda: os.kill(os.getpid(), signal.SIGSEGV))  # what a crash at teardown looks like
sys.argv = ["autarky", "approve", "apr-1", "--reason", " "]
main() if {use_main} else sys.exit(run_cli())
"""


@pytest.mark.parametrize(("use_main", "expected"), [(True, 2), (False, -signal.SIGSEGV)])
async def test_nothing_at_teardown_changes_the_exit_code(use_main: bool, expected: int) -> None:
    """main() leaves before atexit handlers and interpreter teardown; a plain sys.exit would crash."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASH_AT_TEARDOWN.format(use_main=use_main),
        env=cli_environ(None),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode == expected, out.decode()
    if use_main:
        assert out.decode() == REASON_MISSING  # and what it printed was flushed before leaving


def test_exits_and_errors_become_exit_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith(("AUTARKY_", "TEMPORAL_"))]:
        monkeypatch.delenv(name)
    assert run_cli(["--help"]) == 0
    assert "approvals" in capsys.readouterr().out
    assert run_cli(["no-such-command"]) == 2  # a usage error
    assert "No such command" in capsys.readouterr().err
    assert run_cli(["approve", "apr-1"]) == 2
    assert capsys.readouterr().err == REASON_MISSING
    monkeypatch.setenv("AUTARKY_SERVER_PORT", "not-a-port")
    assert run_cli(["status"]) == 2  # invalid configuration
    assert "AUTARKY_SERVER_PORT" in capsys.readouterr().err


RAISING_COMMAND = """
import sys
import autarky.cli.main as cli
from autarky.client import ApprovalNotFound

async def connect(settings):
    raise {error}

cli.autarky_client = connect  # `autarky status` fails in its coroutine, where a command's work happens
sys.argv = ["autarky", "status"]
cli.main()
"""


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ('KeyError("hosts")', "KeyError: 'hosts'"),  # a bug: its traceback, not just 'hosts'
        ('RuntimeError("dictionary changed size during iteration")', "RuntimeError: dictionary changed"),
        ("ApprovalNotFound(\"no pending approval 'apr-1'\")", "no pending approval 'apr-1'\n"),
        ('RuntimeError("Failed client connect: bad TLS")', "Failed client connect: bad TLS\n"),
    ],
    ids=["KeyError", "RuntimeError", "ApprovalNotFound", "connect-failure"],
)
async def test_a_bug_shows_its_traceback_and_a_meant_error_one_line(error: str, expected: str) -> None:
    """The errors a command means (no approval, a failed connection…) are one line; anything else is a bug,
    shown with its traceback. Both exit 1."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RAISING_COMMAND.format(error=error),
        env=cli_environ(None),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await process.communicate())[0].decode()
    assert process.returncode == 1, out
    if expected.endswith("\n"):  # meant: the message, alone on its line
        assert out == expected, out
    else:
        assert "Traceback" in out and expected in out, out
