"""Run a command in the sandbox every candidate gets: bubblewrap, no network, a read-only system, one
fresh writable work directory, no secrets, resource limits.

What the sandboxed process sees:
- `/sandbox`: its work directory, a size-capped tmpfs with the caller's files read-only in it and the
  declared outputs writable through to the host (workspace.py); besides it only a capped private /tmp;
- read-only: /usr (and the /bin, /lib… links into it), this Python's installation and virtualenv, and
  the data directories the caller lends (mounted under /data);
- not at all: home directories, the project's data directory, /etc, other processes (own PID namespace),
  any network (own network namespace: not even the host's loopback, where Temporal listens);
- an environment of PATH, HOME, LANG, PYTHONPATH and what the caller adds — never the worker's.

Limits (setrlimit before bubblewrap starts, inherited by everything inside): CPU seconds, address space,
processes, open files, file size (which also bounds the output, written to a file outside the sandbox),
and a wall clock; `--die-with-parent` and a PID namespace make sure nothing outlives the run or the
worker. Totals for the whole run (cgroups.py): its own cgroup bounds memory (shared memory included) and
processes, and the waiter stops it when its CPU time is spent; what this machine cannot bound is in the
result (`unbounded`), and `require_totals` refuses to run without it.

A worker running as root hands the command to an unprivileged user id of its own (`setpriv`) inside the
sandbox, because the kernel does not count processes of root against RLIMIT_NPROC; a worker that is not
root runs bubblewrap in a user namespace. Every command runs under a seccomp filter (seccomp_filter.py:
no new namespaces, keyrings, io_uring, bpf, ptrace, mounts, sockets but unix/inet) and with a fresh
session keyring (keyring.py), so neither the kernel's riskier paths nor the worker's keys are in reach.
Without bubblewrap or libseccomp nothing runs: `SandboxUnavailable` says how to install them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from activities.selfmod import cgroups, keyring
from activities.selfmod.cgroups import RunCgroup, process_budget
from activities.selfmod.seccomp_filter import SeccompUnavailable, seccomp_program
from activities.selfmod.workspace import declare_outputs, scratch_bytes, workdir_mounts
from autarky.selfmod.types import SandboxLimit, SandboxLimits, SandboxResult

WORKDIR = "/sandbox"
STARTED_FD = 3
DATA_ROOT = "/data"
# The uid a root worker's sandbox runs as is drawn from this range: each run its own, so one run's
# fork bomb does not eat the process limit of another running at the same time.
UID_RANGE = (200_000, 299_999)
# Signals bubblewrap reports as 128 + signal when the command dies of one.
_BY_SIGNAL = {signal.SIGXCPU: SandboxLimit.CPU, signal.SIGXFSZ: SandboxLimit.FILE_SIZE}
# What a program prints when the kernel refused it memory or a process (it exits on its own then).
# Python ignores SIGXFSZ and gets EFBIG instead; a full /sandbox or /tmp (capped by the file size) ENOSPC.
_FILE_SIZE_SIGNS = ("File too large", "No space left on device")
_MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
_PROCESS_SIGNS = ("Resource temporarily unavailable", "fork: retry", "can't fork", "Cannot fork")  # …, dash
MIB = 1024 * 1024
OPEN_FILES = 256  # RLIMIT_NOFILE of every process of a run
BWRAP_TASKS = 2  # bubblewrap's own processes in a run: the one started and its PID namespace's init
POLL_SECONDS = 0.1  # how often the waiter reads the run's CPU time and OOM kills from its cgroup
CPU_GRACE = 0.5  # CPU seconds over cpu_seconds before the whole run is stopped (see _wait)
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

INSTALL_HINT = (
    "bubblewrap (bwrap) is needed to run candidates in their sandbox and is not installed: "
    "`apt-get install bubblewrap` (Debian/Ubuntu), `dnf install bubblewrap` (Fedora). "
    "Autarky never runs a candidate outside its sandbox."
)


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up on this machine (bubblewrap missing or not permitted)."""


def bwrap_binary() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(INSTALL_HINT)
    return path


def python_dirs() -> list[Path]:
    """Where this Python lives (installation and virtualenv), so `python` works inside the sandbox."""
    dirs: list[Path] = []
    for p in (sys.base_prefix, sys.prefix, str(Path(sys.executable).resolve().parent.parent)):
        path = Path(p).resolve()
        if path == Path("/usr") or path.is_relative_to("/usr"):
            continue
        if not any(path.is_relative_to(d) for d in dirs):
            dirs = [d for d in dirs if not d.is_relative_to(path)] + [path]
    return dirs


def sandbox_python() -> str:
    """The interpreter a sandboxed command should call (this virtualenv's, visible inside)."""
    return sys.executable


def build_command(
    command: Sequence[str],
    workdir: Path,
    limits: SandboxLimits,
    *,
    data: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    run_as: int | None = None,
    hide: Sequence[Path] = (),
    seccomp_fd: int | None = None,
    outputs: Sequence[str] = (),
) -> list[str]:
    """The bwrap command line. `data` lends host directories read-only as /data/<name>; `hide` masks
    files the command must not read even where the system is visible; `seccomp_fd` is an open file with
    the filter's program (see `seccomp_memfd`), which run_sandboxed always passes."""
    args = [bwrap_binary(), "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    if os.geteuid() != 0:
        args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    args += ["--ro-bind", "/usr", "/usr"]
    for d in SYSTEM_DIRS:
        path = Path(d)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), d]
        elif path.is_dir():
            args += ["--ro-bind", d, d]
    # /tmp first: a Python or data under /tmp (a checkout there) is then mounted on top, not hidden.
    # 1777 like a real /tmp: created by a root bubblewrap it would be root's 0755, unwritable by the
    # unprivileged user a root worker runs the command as.
    args += ["--size", str(limits.file_size_mib * 4 * 1024 * 1024), "--perms", "1777", "--tmpfs", "/tmp"]
    binds = [(str(d), str(d)) for d in python_dirs()]
    binds += [(str(host), f"{DATA_ROOT}/{name}") for name, host in sorted((data or {}).items())]
    # bwrap would create the mount points' parents (/root, /home/…) private to root; made first with
    # 0755 the sandbox's user can reach what is mounted there, and nothing else is in them.
    parents = sorted({str(p) for _, dest in binds for p in Path(dest).parents if str(p) not in ("/", "/tmp")})
    for parent in parents:
        args += ["--perms", "0755", "--dir", parent]
    for host, dest in binds:
        args += ["--ro-bind", host, dest]
    # Files the judge keeps (labels) that happen to lie under a visible directory, e.g. an installed
    # package under /usr: masked (a bind of /dev/null, which the sandbox may not even open).
    visible = [Path("/usr"), *python_dirs()]
    for path in hide or ():
        real = Path(path).resolve()
        if real.is_file() and any(real.is_relative_to(v) for v in visible):
            args += ["--ro-bind", "/dev/null", str(real)]
    args += workdir_mounts(workdir, WORKDIR, limits, outputs)
    # /dev read-only: bwrap's /dev is a tmpfs without a size, which a user namespace's run could fill.
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev", "--clearenv"]
    for key, value in sandbox_env(env).items():
        args += ["--setenv", key, value]
    if run_as is not None:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise SandboxUnavailable(
                "setpriv (util-linux) is needed to run the sandbox as an unprivileged user when the worker "
                "runs as root: `apt-get install util-linux`"
            )
        args += [setpriv, f"--reuid={run_as}", f"--regid={run_as}", "--clear-groups"]
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    # The command starts by saying so on fd 3 (then closes it): a run that never said it was a sandbox
    # that could not be set up, whatever the command might print to look like one.
    return [
        *args,
        "/bin/sh",
        "-c",
        f'printf started >&{STARTED_FD}; exec {STARTED_FD}>&-; exec "$@"',
        "sh",
        *command,
    ]


def sandbox_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: nothing of the worker's (no keys, no tokens)."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": WORKDIR,
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONPATH": WORKDIR,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }
    env.update(extra or {})
    return env


def seccomp_memfd() -> int:
    """The seccomp filter's program in a memory file, at offset 0 (bwrap reads it from there to the end).
    Close-on-exec, so only the child it is passed to gets it; never fd 3, which the child's fd 3 replaces."""
    try:
        program = seccomp_program()
    except SeccompUnavailable as error:
        raise SandboxUnavailable(str(error)) from error
    fd = os.memfd_create("autarky-seccomp")
    if fd == STARTED_FD:
        fd, first = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, STARTED_FD + 1), fd
        os.close(first)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def kernel_protections(run_as: int | None) -> list[str]:
    """What guards the kernel surface of a run started by run_sandboxed (for its result and people)."""
    found = ["seccomp filter", "no user namespaces", "pid/net/ipc/uts/mount namespaces", "no capabilities"]
    found += ["no new privileges"]
    if keyring.supported():
        found.append("own session keyring")
    found.append(
        f"unprivileged uid {run_as}" if run_as is not None else f"uid {os.getuid()} in a user namespace"
    )
    return found


def _in_child(limits: SandboxLimits, says_started: int, cgroup_procs: Sequence[str], nproc: int) -> None:
    """Between fork and exec: into the run's cgroups (first, so bubblewrap and all it starts count), the
    "started" pipe on fd 3 for the command, the limits, and a session keyring of its own."""
    pid = str(os.getpid()).encode()
    for path in cgroup_procs:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    os.dup2(says_started, STARTED_FD)
    _set_limits(limits, nproc)
    keyring.join_new_session_keyring()


def _set_limits(limits: SandboxLimits, nproc: int | None = None) -> None:
    """Runs in the child between fork and exec: the limits bind bubblewrap and all it starts."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mib * MIB, limits.memory_mib * MIB))
    _lower(resource.RLIMIT_NPROC, limits.processes if nproc is None else nproc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mib * MIB, limits.file_size_mib * MIB))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _lower(resource.RLIMIT_NOFILE, OPEN_FILES)


def _lower(kind: int, value: int) -> None:
    # A non-root worker cannot raise a hard limit: never above the one it has.
    hard = resource.getrlimit(kind)[1]
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


class UnboundedTotals(SandboxUnavailable):
    """The run was to have its totals bounded, and this machine cannot (`unbounded`: total -> why)."""

    def __init__(self, unbounded: Mapping[str, str]) -> None:
        self.unbounded = dict(unbounded)
        why = "; ".join(f"{total}: {reason}" for total, reason in sorted(self.unbounded.items()))
        super().__init__(f"the sandbox cannot bound this run's totals on this machine ({why})")


def run_sandboxed(
    command: Sequence[str],
    workdir: Path,
    limits: SandboxLimits | None = None,
    *,
    data: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    hide: Sequence[Path] = (),
    outputs: Sequence[str] = (),
    require_totals: bool = False,
) -> SandboxResult:
    """Run `command` in the sandbox: `workdir`'s files read-only in its /sandbox, `outputs` (paths in
    `workdir`) writable there and kept, anything else it writes gone after the run. Never raises for what
    the command does (that is in the result), only when the sandbox itself cannot be set up, or when
    `require_totals` and the machine cannot bound memory, processes and CPU for the whole run
    (`UnboundedTotals`); otherwise what is not bounded is in the result's `unbounded`."""
    limits = limits or SandboxLimits()
    outputs = declare_outputs(workdir, outputs)
    run_as = None
    if os.geteuid() == 0:
        run_as = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])
        _chown_tree(workdir, run_as)
    cgroup = RunCgroup.create(limits.memory_mib, limits.processes + BWRAP_TASKS, limits.cpu_seconds)
    try:
        nproc, said = process_budget(limits.processes + BWRAP_TASKS, run_as, cgroup)
        if require_totals and cgroup.unbounded:
            raise UnboundedTotals(cgroup.unbounded)
        result = _run(command, workdir, limits, cgroup, nproc, run_as, data, env, hide, outputs)
    finally:
        cgroup.remove()
    totals = [*cgroup.protections, *said, f"≤ {OPEN_FILES} open files a process"]
    totals.append(
        f"work directory: tmpfs ≤ {scratch_bytes(limits) // MIB} MiB; kept: {len(outputs)} declared "
        f"output(s) ≤ {limits.file_size_mib} MiB each"
    )
    result.protections = [*result.protections, *totals]
    result.unbounded = dict(cgroup.unbounded)
    return result


def _run(
    command: Sequence[str],
    workdir: Path,
    limits: SandboxLimits,
    cgroup: RunCgroup,
    nproc: int,
    run_as: int | None,
    data: Mapping[str, Path] | None,
    env: Mapping[str, str] | None,
    hide: Sequence[Path],
    outputs: Sequence[str],
) -> SandboxResult:
    seccomp_fd = seccomp_memfd()
    try:
        argv = build_command(
            command,
            workdir,
            limits,
            data=data,
            env=env,
            run_as=run_as,
            hide=hide,
            seccomp_fd=seccomp_fd,
            outputs=outputs,
        )
    except BaseException:
        os.close(seccomp_fd)
        raise
    started = time.monotonic()
    said_started, says_started = os.pipe()
    join = cgroup.join_files
    with tempfile.TemporaryFile() as output:
        # The output goes to a file outside the sandbox: RLIMIT_FSIZE bounds it, a pipe could not.
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(STARTED_FD, says_started, seccomp_fd),
                preexec_fn=lambda: _in_child(limits, says_started, join, nproc),
            )
        except subprocess.SubprocessError as error:  # the child could not join the cgroups or set limits
            os.close(said_started)
            problem = f"the sandbox's first process could not be set up ({error}; cgroups {join})"
            raise SandboxUnavailable(problem) from error
        finally:
            os.close(says_started)
            os.close(seccomp_fd)
        returncode, limit = _wait(process, limits, cgroup, started)
        wall = time.monotonic() - started
        text, truncated = _read_bounded(output, limits.output_bytes)
        # A writer stopped by the file-size limit often cannot even print why (its stderr is this file).
        output_full = output.seek(0, os.SEEK_END) >= limits.file_size_mib * MIB
    with os.fdopen(said_started, "rb") as said:
        ran = said.read(16) == b"started"
    if not ran and limit is None:
        raise SandboxUnavailable(f"bubblewrap could not set up the sandbox: {text.strip()[:2000]}")
    exit_code: int | None = returncode
    sig: int | None = None
    if returncode < 0:
        exit_code, sig = None, -returncode
    elif returncode > 128:
        exit_code, sig = None, returncode - 128
    if limit is None and cgroup.oom_kills():  # even when the run exited 0: the kernel killed part of it
        limit = SandboxLimit.MEMORY
    if limit is None and returncode != 0:  # a run that succeeded was not stopped, whatever it printed
        # SIGKILL is the hard CPU limit (soft + 5 s) only if the run lasted long enough to use that much
        # CPU on all cores; sooner it killed itself (or something else did). A run whose CPU the cgroup
        # counts is stopped by the waiter before that.
        counted = cgroup.cpu_seconds() is not None
        hard_cpu = not counted and wall >= (limits.cpu_seconds + 5) / (os.cpu_count() or 1)
        limit = SandboxLimit.FILE_SIZE if output_full else _limit_hit(sig, text, hard_cpu=hard_cpu)
        if limit is None and cgroup.refused_forks():
            limit = SandboxLimit.PROCESSES
    cpu = cgroup.cpu_seconds()
    return SandboxResult(
        exit_code=exit_code,
        signal=sig,
        limit=limit,
        output=text,
        output_truncated=truncated,
        wall_seconds=round(wall, 3),
        protections=kernel_protections(run_as),
        cpu_seconds_used=None if cpu is None else round(cpu, 3),
        memory_peak_mib=cgroup.memory_peak_mib(),
    )


def _wait(
    process: subprocess.Popen, limits: SandboxLimits, cgroup: RunCgroup, started: float
) -> tuple[int, SandboxLimit | None]:
    """The run's exit status, or the limit it was stopped by: the wall clock, or (polled from its cgroup)
    its total CPU time or an out-of-memory kill."""
    deadline = started + limits.wall_seconds
    polled = cgroup.cpu_seconds() is not None or cgroups.MEMORY in cgroup.dirs
    # The grace lets a single process meet its own RLIMIT_CPU first and say so with SIGXCPU.
    budget = limits.cpu_seconds + CPU_GRACE
    while True:
        left = max(0.0, deadline - time.monotonic())
        try:
            return process.wait(timeout=min(left, POLL_SECONDS) if polled else left), None
        except subprocess.TimeoutExpired:
            pass
        limit = None
        if time.monotonic() >= deadline:
            limit = SandboxLimit.WALL_CLOCK
        elif (used := cgroup.cpu_seconds()) is not None and used > budget:
            limit = SandboxLimit.CPU
        elif cgroup.oom_kills():
            limit = SandboxLimit.MEMORY
        if limit is not None:
            _kill_group(process.pid)
            cgroup.kill()
            return process.wait(), limit


def _limit_hit(sig: int | None, output: str, *, hard_cpu: bool = True) -> SandboxLimit | None:
    if sig is not None and sig in _BY_SIGNAL:
        return _BY_SIGNAL[signal.Signals(sig)]
    if sig == signal.SIGKILL:
        # the hard CPU limit; the wall clock is recognised before this
        return SandboxLimit.CPU if hard_cpu else None
    if any(sign in output for sign in _FILE_SIZE_SIGNS):
        return SandboxLimit.FILE_SIZE
    if any(sign in output for sign in _MEMORY_SIGNS):
        return SandboxLimit.MEMORY
    if any(sign in output for sign in _PROCESS_SIGNS):
        return SandboxLimit.PROCESSES
    return None


def _kill_group(pgid: int) -> None:
    # bwrap leads its own process group; killing it makes the kernel end the sandbox's PID namespace
    # (--die-with-parent), and everything in it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _read_bounded(file, keep: int) -> tuple[str, bool]:
    """The first and last halves of the output when it is longer than `keep` bytes."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    if size <= keep:
        return file.read().decode("utf-8", "replace"), False
    head = file.read(keep // 2)
    file.seek(size - keep // 2)
    tail = file.read()
    cut = f"\n[… {size - len(head) - len(tail)} bytes cut …]\n"
    return head.decode("utf-8", "replace") + cut + tail.decode("utf-8", "replace"), True


def _chown_tree(root: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, uid)
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def new_workdir(parent: Path | None = None, prefix: str = "autarky-sandbox-") -> Path:
    """A fresh, empty work directory for one run."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
