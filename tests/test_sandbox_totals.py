"""The sandbox's totals against hostile code (issue 24): memory across children and in memfds, disk in the
work directory, CPU across children, open files, and the non-root worker. Real bubblewrap, real cgroups;
each case asserts containment (the kernel's or the sandbox's own figure) and that the caller (standing in
for the worker) is unharmed: it lives, nothing of the run is left, and a normal run still works."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.selfmod import cgroups
from activities.selfmod.sandbox import (
    new_workdir,
    remove_workdir,
    run_sandboxed,
    sandbox_python,
)
from autarky.selfmod.types import SandboxLimit, SandboxLimits, SandboxResult
from tests.test_sandbox import host_pids_with

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
PROJECT_DIR = Path(__file__).resolve().parents[1]
# The limits not under test are far out of the way (a busy 2-core machine is slow, not wrong).
LIMITS = SandboxLimits(cpu_seconds=60, wall_seconds=120, memory_mib=1024, processes=32, file_size_mib=64)

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def _missing_totals() -> str:
    missing = cgroups.layout().missing
    return "; ".join(f"{total}: {why}" for total, why in missing.items())


needs_cgroups = pytest.mark.skipif(bool(_missing_totals()), reason=f"no usable cgroup: {_missing_totals()}")


def run_py(code: str, workdir: Path, limits: SandboxLimits = LIMITS, **kwargs: object) -> SandboxResult:
    return run_sandboxed([sandbox_python(), "-c", textwrap.dedent(code)], workdir, limits, **kwargs)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def marker() -> str:
    return f"autarky-totals-{secrets.token_hex(8)}"


@pytest.fixture(autouse=True)
def worker_unharmed(marker: str) -> Iterator[None]:
    rss = rss_mib()
    yield
    os.kill(os.getpid(), 0)
    assert rss_mib() < rss + 100  # what the run held was never the worker's
    assert host_pids_with(marker) == []  # the run's cgroup was emptied before it was removed
    if shutil.which("bwrap") is None:
        return
    path = new_workdir()
    try:
        result = run_py("print('still fine')", path, SandboxLimits())
        assert result.ok and result.output == "still fine\n", result
    finally:
        remove_workdir(path)


CHILDREN = """
    import os, sys, time
    for i in range(6):
        if os.fork() == 0:
            block = bytearray(100 * 1024 * 1024)
            for j in range(0, len(block), 4096):
                block[j] = 1  # touched: resident, not only reserved
            print("child holds 100 MiB", flush=True)
            time.sleep(30)  # MARKER
            os._exit(0)
    for _ in range(6):
        os.wait()
"""


@needs_bwrap
@needs_cgroups
def test_memory_across_children_is_bounded(workdir: Path, marker: str) -> None:
    limits = LIMITS.model_copy(update={"memory_mib": 256})
    result = run_py(CHILDREN.replace("MARKER", marker), workdir, limits)
    assert result.limit is SandboxLimit.MEMORY, result
    assert not result.ok
    assert result.output.count("holds 100 MiB") <= 2  # never three at once in 256 MiB
    assert result.memory_peak_mib is not None and result.memory_peak_mib <= 256
    assert result.unbounded == {}


@needs_bwrap
@needs_cgroups
def test_memfds_are_bounded(workdir: Path) -> None:
    code = """
        import os
        chunk = b"x" * (1024 * 1024)
        for i in range(16):
            fd = os.memfd_create(f"hog{i}")
            for _ in range(60):
                os.write(fd, chunk)  # shared memory, not the address space RLIMIT_AS would catch
            print("memfd", i + 1, flush=True)
    """
    result = run_py(code, workdir, LIMITS.model_copy(update={"memory_mib": 256}))
    assert result.limit is SandboxLimit.MEMORY, result
    filled = [int(line.split()[1]) for line in result.output.splitlines() if line.startswith("memfd ")]
    assert max(filled, default=0) <= 4  # 4 × 60 MiB fit in 256 MiB, 5 do not
    assert result.memory_peak_mib is not None and result.memory_peak_mib <= 256


@needs_bwrap
def test_disk_total_in_the_workdir_is_capped(workdir: Path) -> None:
    (workdir / "given.txt").write_text("prepared by the caller")
    code = """
        import os
        for i in range(10):
            try:
                with open(f"fill-{i}", "wb") as f:
                    for _ in range(60):
                        f.write(b"x" * (1024 * 1024))
                print("file", i, "written", flush=True)
            except OSError as e:
                print("file", i, e.strerror, flush=True)
        for name in ("given.txt", "out.json"):
            try:
                open(name, "a").write("y" * 1024)
                print(name, "appended")
            except OSError as e:
                print(name, e.strerror)
    """
    result = run_py(code, workdir, outputs=["out.json"])
    assert result.output.count("written") <= 4, result.output  # /sandbox holds 4 × file_size_mib
    assert "No space left on device" in result.output
    assert "given.txt Read-only file system" in result.output
    assert "out.json appended" in result.output
    on_disk = {p.name: p.stat().st_size for p in workdir.rglob("*")}
    assert on_disk == {"given.txt": len("prepared by the caller"), "out.json": 1024}, on_disk


@needs_bwrap
@needs_cgroups
def test_cpu_across_children_is_bounded(workdir: Path, marker: str) -> None:
    code = f"""
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                while True:  # {marker}
                    pass
        time.sleep(600)
    """
    limits = LIMITS.model_copy(update={"cpu_seconds": 2, "wall_seconds": 600})
    result = run_py(code, workdir, limits)
    assert result.limit is SandboxLimit.CPU, result
    assert result.exit_code is None and not result.ok
    # Stopped soon after 2 s + the grace: the waiter polls every 0.1 s (slower on a busy machine).
    assert result.cpu_seconds_used is not None and 2 < result.cpu_seconds_used < 6, result
    assert result.wall_seconds < 300


@needs_bwrap
def test_open_files_are_bounded(workdir: Path) -> None:
    code = """
        import os
        held = []
        try:
            while True:
                held.extend(os.pipe())
        except OSError as e:
            print("held", len(held), e.strerror)
            raise SystemExit(3)
    """
    result = run_py(code, workdir)
    assert result.exit_code == 3, result
    assert "Too many open files" in result.output
    assert int(result.output.split()[1]) < 256


# --- the non-root worker -----------------------------------------------------------------------------


def _userns_problem() -> str | None:
    if os.geteuid() != 0:
        return "the test becomes an unprivileged user, which takes root"
    if shutil.which("bwrap") is None or shutil.which("setpriv") is None or shutil.which("unshare") is None:
        return "bubblewrap, setpriv and unshare are needed"
    done = subprocess.run(
        [*AS_NOBODY, "bwrap", "--unshare-user", "--disable-userns", "--ro-bind", "/", "/", "true"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"this kernel refuses unprivileged user namespaces: {done.stderr.strip()}"
    return None


needs_userns = pytest.mark.skipif(bool(_userns_problem()), reason=str(_userns_problem()))

SCRIPT = """
import json, sys
from activities.selfmod.sandbox import UnboundedTotals, new_workdir, remove_workdir, run_sandboxed
from autarky.selfmod.types import SandboxLimits
code, limits, require = sys.argv[1], SandboxLimits(**json.loads(sys.argv[2])), sys.argv[3] == "require"
work = new_workdir()
try:
    result = run_sandboxed([sys.executable, "-c", code], work, limits, require_totals=require)
    print(result.model_dump_json())
except UnboundedTotals as e:
    print(json.dumps({"refused": str(e), "unbounded": e.unbounded}))
finally:
    remove_workdir(work)
"""


def _reachable(path: Path) -> str:
    """Shell lines (for a private mount namespace) that let any user reach `path`, when a directory on
    the way is private (a Python under /root): a tmpfs over it, holding only the way through."""
    parents = [p for p in reversed(path.parents) if p != Path("/")] + [path]
    closed = [p for p in parents if not os.stat(p).st_mode & 0o001]
    if not closed:
        return ""
    top = closed[0]
    way = parents[parents.index(top) + 1]
    if any(p != top for p in closed):
        pytest.skip(f"{path} is behind more than one private directory ({closed})")
    top, way = shlex.quote(str(top)), shlex.quote(str(way))
    return (
        f"keep=$(mktemp -d); mount --bind {way} $keep; mount -t tmpfs -o mode=755,size=1m none {top}; "
        f"mkdir -p {way}; mount --bind $keep {way}; umount $keep; rmdir $keep; "
    )


def as_nobody(script: str, args: list[str], cgroup_dirs: list[Path] = ()) -> dict:
    """`script` run by this Python as uid 65534 (joining `cgroup_dirs` first), with this project on its
    path; what it printed last, as JSON."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", dir="/tmp", delete=False) as f:
        f.write(script)
    os.chmod(f.name, 0o644)
    join = "".join(f"echo $$ > {shlex.quote(str(d / cgroups.PROCS))}; " for d in cgroup_dirs)
    python = Path(sys.executable)
    needed = {Path(p).resolve() for p in (sys.base_prefix, sys.prefix, python.resolve().parent, PROJECT_DIR)}
    needed = {p for p in needed if not any(p != q and p.is_relative_to(q) for q in needed)}
    setup = "".join(_reachable(p) for p in sorted(needed))
    drop = [*AS_NOBODY, "env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp", f"PYTHONPATH={PROJECT_DIR}"]
    shell = f"set -e; {join}{setup}exec {shlex.join([*drop, str(python), f.name, *args])}"
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell],
            capture_output=True,
            text=True,
            cwd="/tmp",
            timeout=300,
        )
    finally:
        os.unlink(f.name)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_as_nobody(code: str, limits: dict, *, require: bool = False, cgroup_dirs: list[Path] = ()) -> dict:
    """run_sandboxed(code) by a worker running as uid 65534: its result, or why it refused to run."""
    args = [textwrap.dedent(code), json.dumps(limits), "require" if require else "-"]
    return as_nobody(SCRIPT, args, cgroup_dirs)


@pytest.fixture
def busy_uid() -> Iterator[None]:
    """Uid 65534 with 70 tasks already, as a desktop user has more than RLIMIT_NPROC's old 64."""
    sleepers = [subprocess.Popen([*AS_NOBODY, "sleep", "300"]) for _ in range(70)]
    deadline = time.monotonic() + 30
    while cgroups.tasks_of(NOBODY) < 70 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


FORK_ALL = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print("forked", n, e.strerror)
    raise SystemExit(3)
"""


@needs_userns
def test_non_root_worker_with_many_tasks_runs_and_says_what_is_unbounded(busy_uid: None) -> None:
    limits = {"processes": 16, "wall_seconds": 60}
    ran = run_as_nobody("import os; print('uid', os.getuid())", limits)
    assert ran["exit_code"] == 0 and ran["output"] == f"uid {NOBODY}\n", ran
    # This test's cgroups belong to root: not writable by uid 65534, so memory and CPU are not bounded
    # for the whole run, and the result says so; processes are (RLIMIT_NPROC over the uid's own tasks).
    assert {"memory", "cpu_seconds"} <= set(ran["unbounded"]), ran
    assert "processes" not in ran["unbounded"]
    bomb = run_as_nobody(FORK_ALL, limits)
    assert bomb["exit_code"] == 3 and bomb["limit"] == "processes", bomb
    assert int(bomb["output"].split()[1]) <= 16
    refused = run_as_nobody("print('ran')", limits, require=True)
    assert "memory" in refused["unbounded"] and "cannot bound" in refused["refused"], refused
    assert "output" not in refused


@pytest.fixture
def delegated() -> Iterator[list[Path]]:
    """A cgroup per hierarchy owned by uid 65534, below this process's own, as a delegation makes one."""
    found = cgroups.layout()
    if found.missing:
        pytest.skip(f"no usable cgroup: {_missing_totals()}")
    name = f"autarky-test-delegated-{secrets.token_hex(4)}"
    dirs = sorted({parent / name for parent in found.parents.values()})
    for directory in dirs:
        directory.mkdir()
        for path in [
            directory,
            *(directory / n for n in ("cgroup.procs", "tasks", "cgroup.subtree_control")),
        ]:
            if path.exists():
                os.chown(path, NOBODY, NOBODY)
    try:
        yield dirs
    finally:
        for directory in dirs:
            for below in sorted(directory.rglob("*"), key=lambda p: -len(p.parts)):
                if below.is_dir():
                    below.rmdir()
            directory.rmdir()


@needs_userns
def test_non_root_worker_in_a_delegated_cgroup_bounds_totals(busy_uid: None, delegated: list[Path]) -> None:
    limits = {"memory_mib": 256, "processes": 16, "wall_seconds": 120, "cpu_seconds": 60}
    result = run_as_nobody(CHILDREN.replace("MARKER", "delegated"), limits, cgroup_dirs=delegated)
    assert result.get("limit") == "memory", result
    assert result["unbounded"] == {}
    assert result["output"].count("holds 100 MiB") <= 2
    assert result["memory_peak_mib"] <= 256
    # Refusing to run unbounded is not in the way when the totals are bounded.
    ok = run_as_nobody("print('bounded')", limits, require=True, cgroup_dirs=delegated)
    assert ok.get("output") == "bounded\n", ok


POLICY = """
import difflib, json, sys, tempfile
from pathlib import Path
from temporalio.exceptions import ApplicationError
from activities.selfmod.activities import SelfModActivities
from activities.selfmod.sandbox import new_workdir, remove_workdir
from autarky.core.settings import AutarkySettings
from autarky.selfmod.settings import EvolutionSettings
from autarky.selfmod.types import CandidateOrigin, SandboxLimits

evolution = EvolutionSettings(allow_unbounded_totals=sys.argv[1])
acts = SelfModActivities(AutarkySettings(data_dir=Path(tempfile.mkdtemp()), evolution=evolution))
spec, repo = acts.repository("relevance-scorer")
base = repo.active().commit
path = spec.source_files[0]
text = repo.read_file(base, path)
diff = "".join(difflib.unified_diff(
    text.splitlines(True), (text + "# an LLM's change\\n").splitlines(True), f"a/{path}", f"b/{path}"
))
parameters = repo.version(base).parameters
llm = repo.create_candidate(base, "g1p1", "totals", parameters, diff, CandidateOrigin.LLM, "x").commit
outcome = {}
for name, commit in (("shipped", base), ("llm", llm)):
    work = new_workdir()
    try:
        command = [sys.executable, "-c", "print('ran')"]
        result = acts.sandboxed(command, work, SandboxLimits(), spec, repo, commit)
        outcome[name] = result.output.strip()
    except ApplicationError as e:
        outcome[name] = f"{e.type} {e.non_retryable}: {e}"
    finally:
        remove_workdir(work)
print(json.dumps(outcome))
"""


@needs_userns
def test_without_totals_llm_code_is_refused_by_default() -> None:
    """The self-modification activities on a worker that cannot bound totals (uid 65534, no delegated
    cgroup): shipped sources run, code an LLM wrote does not unless the setting says so."""
    default = as_nobody(POLICY, ["parameters"])
    assert default["shipped"] == "ran", default
    assert default["llm"].startswith("UnboundedSandbox True: "), default
    assert "allow_unbounded_totals" in default["llm"] and "memory" in default["llm"]
    never = as_nobody(POLICY, ["never"])
    assert never["shipped"].startswith("UnboundedSandbox True: "), never
    always = as_nobody(POLICY, ["always"])
    assert always == {"shipped": "ran", "llm": "ran"}, always
