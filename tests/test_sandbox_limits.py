"""The candidate sandbox's limits against hostile code: processes, memory, loops, output, killing the parent
and background processes. Each case is stopped and reported in the result (a non-zero exit or a named
limit) and leaves the caller (standing in for the worker) unharmed: the autouse fixture of
tests/test_sandbox.py runs a normal sandboxed run after each one."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from activities.selfmod.sandbox import run_sandboxed
from autarky.selfmod.types import SandboxLimit
from tests import test_sandbox
from tests.test_sandbox import LIMITS, needs_bwrap, run_py, stopped, wait_no_process_with

marker = test_sandbox.marker
worker_unharmed = test_sandbox.worker_unharmed  # autouse: the caller is unharmed after each case


# --- 4. processes ---------------------------------------------------------------------------------------


@needs_bwrap
def test_python_fork_bomb(workdir: Path, marker: str) -> None:
    code = """
        import os
        while True:
            os.fork()
    """
    result = run_py(code, workdir, LIMITS.model_copy(update={"wall_seconds": 5}), marker)
    assert stopped(result)
    assert result.limit in (SandboxLimit.PROCESSES, SandboxLimit.WALL_CLOCK, SandboxLimit.CPU), (
        result.summary()
    )
    assert wait_no_process_with(marker) == []


@needs_bwrap
def test_stubborn_fork_bomb_is_stopped_and_leaves_nothing(workdir: Path, marker: str) -> None:
    # Every process keeps forking and never gives up on an error: only the wall clock ends it.
    code = """
        import os, time
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    """
    # CPU time far above what two cores give in the wall time: only the wall clock can end it.
    limits = LIMITS.model_copy(update={"wall_seconds": 3, "cpu_seconds": 60})
    result = run_py(code, workdir, limits, marker)
    assert stopped(result)
    assert result.limit is SandboxLimit.WALL_CLOCK, result.summary()
    assert result.wall_seconds < limits.wall_seconds + 3
    assert wait_no_process_with(marker) == []


@needs_bwrap
def test_shell_fork_bomb(workdir: Path, marker: str) -> None:
    # `wait` alone would only wait for the first background job, which returns at once: the script could
    # end before the bomb met the limit (it did on CI). The top shell stays until the wall clock instead,
    # as `sleep` by exec: forking it could fail once the bomb holds every process (it did on a busy machine).
    # It forks only once, before the bomb exists: `bomb` itself would fork twice (a pipeline of two), and the
    # second fork could meet the limit the first one's bomb had already reached.
    script = f"bomb() {{ bomb | bomb & }}; bomb & exec sleep 60 # {marker}"
    # CPU time far above what two cores give in the wall time (a bomb once spent 3.9 s of CPU in 2.2 s).
    limits = LIMITS.model_copy(update={"wall_seconds": 3, "cpu_seconds": 60})
    result = run_sandboxed(["/bin/sh", "-c", script], workdir, limits)
    assert "Cannot fork" in result.output, result.summary()
    assert result.limit is SandboxLimit.WALL_CLOCK, result.summary()
    assert result.wall_seconds < limits.wall_seconds + 3
    assert wait_no_process_with(marker) == []


@needs_bwrap
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_shell_spawning_too_many_processes(workdir: Path, marker: str, shell: str) -> None:
    # dash gives up ("Cannot fork"), bash retries ("fork: retry") until the wall clock.
    script = f"i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; wait # {marker}"
    result = run_sandboxed([shell, "-c", script], workdir, LIMITS.model_copy(update={"wall_seconds": 2}))
    assert stopped(result)
    assert result.limit in (SandboxLimit.PROCESSES, SandboxLimit.WALL_CLOCK), result.summary()
    if result.limit is SandboxLimit.WALL_CLOCK:
        assert "fork: retry" in result.output
    assert wait_no_process_with(marker) == []


@needs_bwrap
def test_process_limit_is_enforced(workdir: Path, marker: str) -> None:
    code = """
        import subprocess, sys
        children = []
        try:
            for _ in range(100):
                children.append(subprocess.Popen(["sleep", "30"]))
        finally:
            print("started", len(children))
            for child in children:
                child.kill()
    """
    result = run_py(code, workdir, LIMITS, marker)
    assert stopped(result)
    assert result.limit is SandboxLimit.PROCESSES, result
    started = int(result.output.split("started ")[1].split()[0])
    assert started < LIMITS.processes


# --- 5. memory --------------------------------------------------------------------------------------------


@needs_bwrap
@pytest.mark.parametrize(
    "code",
    [
        "b = bytearray(4 * 1024 ** 3)",
        "x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))",
        "import mmap\nm = mmap.mmap(-1, 4 * 1024 ** 3)",
    ],
    ids=["one-block", "growing", "mmap"],
)
def test_memory_bomb(workdir: Path, code: str) -> None:
    # The wall clock far out of the way: a busy machine took 5.8 s over the growing bomb's 32 allocations.
    result = run_py(code, workdir, LIMITS.model_copy(update={"memory_mib": 512, "wall_seconds": 120}))
    assert stopped(result)
    assert result.limit is SandboxLimit.MEMORY, result
    assert result.wall_seconds < 60  # stopped by the memory limit, not after the machine ground on


@needs_bwrap
def test_tmp_cannot_hold_much(workdir: Path) -> None:
    # /tmp is memory (tmpfs): it is capped, so it cannot be a memory bomb either.
    code = """
        import os
        for i in range(100):
            with open(f"/tmp/fill-{i}", "wb") as f:
                f.write(os.urandom(3 * 1024 * 1024))
    """
    result = run_py(code, workdir)
    assert stopped(result)
    assert "No space left on device" in result.output


# --- 6. loops ---------------------------------------------------------------------------------------------


@needs_bwrap
def test_busy_loop_hits_the_cpu_limit(workdir: Path) -> None:
    limits = LIMITS.model_copy(update={"cpu_seconds": 1, "wall_seconds": 600})  # CPU seconds, not wall
    result = run_py("while True:\n    pass", workdir, limits)
    assert result.limit is SandboxLimit.CPU, result
    assert result.signal == signal.SIGXCPU
    assert result.exit_code is None
    assert not result.ok


@needs_bwrap
def test_busy_loop_ignoring_sigxcpu_hits_the_hard_cpu_limit(workdir: Path) -> None:
    code = """
        import signal
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
        while True:
            pass
    """
    # The loop needs 6 CPU seconds (soft limit 1 + 5) to reach the hard limit: on a busy machine that
    # is many more wall seconds, so the wall clock is set far out of the way (it is not what is tested).
    limits = LIMITS.model_copy(update={"cpu_seconds": 1, "wall_seconds": 600})
    result = run_py(code, workdir, limits)
    assert result.limit is SandboxLimit.CPU, result
    assert result.signal == signal.SIGKILL


@needs_bwrap
def test_self_kill_is_not_a_cpu_limit(workdir: Path) -> None:
    result = run_py("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", workdir)
    assert result.signal == signal.SIGKILL
    assert result.exit_code is None
    assert result.limit is None
    assert stopped(result)


@needs_bwrap
def test_sleeping_loop_hits_the_wall_clock(workdir: Path, marker: str) -> None:
    code = """
        import time
        while True:
            time.sleep(1)
    """
    limits = LIMITS.model_copy(update={"wall_seconds": 1.5})
    result = run_py(code, workdir, limits, marker)
    assert result.limit is SandboxLimit.WALL_CLOCK, result
    assert 1.5 <= result.wall_seconds < 30  # stopped at the limit, not when the loop ended (never)
    assert not result.ok
    assert wait_no_process_with(marker) == []


@needs_bwrap
def test_run_that_prints_limit_words_and_succeeds_is_ok(workdir: Path) -> None:
    result = run_py("print('MemoryError: Resource temporarily unavailable, File too large')", workdir)
    assert result.ok, result
    assert result.limit is None


# --- 7. output --------------------------------------------------------------------------------------------


@needs_bwrap
def test_endless_output_is_cut_and_reported(workdir: Path) -> None:
    code = """
        import sys
        while True:
            sys.stdout.write("x" * 65536)
    """
    result = run_py(code, workdir)
    assert stopped(result)
    assert result.limit is SandboxLimit.FILE_SIZE, result.summary()
    assert result.output_truncated
    assert len(result.output.encode()) <= LIMITS.output_bytes + 200
    assert "bytes cut" in result.output


@needs_bwrap
def test_large_output_under_the_file_limit_keeps_head_and_tail(workdir: Path) -> None:
    code = """
        import sys
        sys.stdout.write("HEAD" + "x" * 1024 * 1024 + "TAIL")
    """
    result = run_py(code, workdir)
    assert result.ok, result.summary()
    assert result.output_truncated
    assert result.output.startswith("HEAD")
    assert result.output.endswith("TAIL")
    assert len(result.output.encode()) <= LIMITS.output_bytes + 200


@needs_bwrap
def test_big_file_in_the_workdir_hits_the_file_size_limit(workdir: Path) -> None:
    code = """
        with open("big", "wb") as f:
            for _ in range(100):
                f.write(b"x" * 1024 * 1024)
    """
    result = run_py(code, workdir, outputs=["big"])  # a declared output: on the host's disk
    assert stopped(result)
    assert result.limit is SandboxLimit.FILE_SIZE, result
    assert (workdir / "big").stat().st_size <= LIMITS.file_size_mib * 1024 * 1024


# --- 8. killing the parent ------------------------------------------------------------------------------


@needs_bwrap
def test_killing_the_parent_and_everyone(workdir: Path) -> None:
    code = f"""
        import os, signal
        errors = []
        for pid in (os.getppid(), -1, 1, {os.getpid()}, {os.getppid()}):
            try:
                os.kill(pid, signal.SIGKILL)
                print("sent", pid)
            except OSError as e:
                errors.append(f"{{pid}}: {{type(e).__name__}}")
        try:
            os.killpg({os.getpgid(0)}, signal.SIGKILL)
        except OSError as e:
            errors.append(f"pg: {{type(e).__name__}}")
        print("errors", errors)
        raise SystemExit(3)
    """
    result = run_py(code, workdir)
    assert stopped(result)
    os.kill(os.getpid(), 0)  # still here (the autouse fixture also runs the sandbox again)


# --- 9. background processes ----------------------------------------------------------------------------


@needs_bwrap
@pytest.mark.parametrize("how", ["new-session", "double-fork", "nohup-sh"])
def test_background_process_does_not_outlive_the_run(workdir: Path, marker: str, how: str) -> None:
    code = """
        import os, subprocess, sys
        marker, how = sys.argv[1], sys.argv[2]
        sleeper = [sys.executable, "-c", "import time; time.sleep(300)", marker]
        if how == "new-session":
            subprocess.Popen(sleeper, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        elif how == "double-fork":
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, sleeper)
                os._exit(0)
            os.wait()
        else:
            script = f"nohup sh -c 'sleep 300; true # {marker}' >/dev/null 2>&1 &"
            subprocess.Popen(["sh", "-c", script]).wait()
        print("left behind")
    """
    result = run_py(code, workdir, LIMITS, marker, how)
    assert result.ok, result
    assert "left behind" in result.output
    assert result.wall_seconds < 5  # the run did not wait for its leftovers
    assert wait_no_process_with(marker) == []
