"""Run a command in the sandbox every candidate gets: bubblewrap, no network, a read-only system, one
fresh writable work directory, no secrets, resource limits.

What the sandboxed process sees:
- `/sandbox`: its work directory (the only writable place besides a small private /tmp);
- read-only: /usr (and the /bin, /lib… links into it), this Python's installation and virtualenv, and
  the data directories the caller lends (mounted under /data);
- not at all: home directories, the project's data directory, /etc, other processes (own PID namespace),
  any network (own network namespace: not even the host's loopback, where Temporal listens);
- an environment of PATH, HOME, LANG, PYTHONPATH and what the caller adds — never the worker's.

Limits (setrlimit before bubblewrap starts, inherited by everything inside): CPU seconds, address space,
processes, file size (which also bounds the output, written to a file outside the sandbox), and a wall
clock; `--die-with-parent` and a PID namespace make sure nothing outlives the run or the worker.

A worker running as root hands the command to an unprivileged user id of its own (`setpriv`) inside the
sandbox, because the kernel does not count processes of root against RLIMIT_NPROC; a worker that is not
root runs bubblewrap in a user namespace. Without bubblewrap nothing runs: `SandboxUnavailable` says how
to install it.
"""

from __future__ import annotations

import contextlib
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
_FILE_SIZE_SIGNS = ("File too large",)  # Python ignores SIGXFSZ and gets EFBIG instead
_MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
_PROCESS_SIGNS = ("Resource temporarily unavailable", "fork: retry", "can't fork", "Cannot fork")  # …, dash
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
) -> list[str]:
    """The bwrap command line. `data` lends host directories read-only as /data/<name>; `hide` masks
    files the command must not read even where the system is visible."""
    args = [bwrap_binary(), "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
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
    args += ["--bind", str(workdir), WORKDIR, "--chdir", WORKDIR]
    args += ["--proc", "/proc", "--dev", "/dev", "--clearenv"]
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


def _in_child(limits: SandboxLimits, says_started: int) -> None:
    """Between fork and exec: the "started" pipe on fd 3 for the command, and the limits."""
    os.dup2(says_started, STARTED_FD)
    _set_limits(limits)


def _set_limits(limits: SandboxLimits) -> None:
    """Runs in the child between fork and exec: the limits bind bubblewrap and all it starts."""
    mib = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mib * mib, limits.memory_mib * mib))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mib * mib, limits.file_size_mib * mib))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_sandboxed(
    command: Sequence[str],
    workdir: Path,
    limits: SandboxLimits | None = None,
    *,
    data: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    hide: Sequence[Path] = (),
) -> SandboxResult:
    """Run `command` in the sandbox with `workdir` as its writable /sandbox; never raises for what the
    command does (that is in the result), only when the sandbox itself cannot be set up."""
    limits = limits or SandboxLimits()
    run_as = None
    if os.geteuid() == 0:
        run_as = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])
        _chown_tree(workdir, run_as)
    argv = build_command(command, workdir, limits, data=data, env=env, run_as=run_as, hide=hide)
    started = time.monotonic()
    said_started, says_started = os.pipe()
    with tempfile.TemporaryFile() as output:
        # The output goes to a file outside the sandbox: RLIMIT_FSIZE bounds it, a pipe could not.
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(STARTED_FD, says_started),
                preexec_fn=lambda: _in_child(limits, says_started),
            )
        finally:
            os.close(says_started)
        limit: SandboxLimit | None = None
        try:
            returncode = process.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            limit = SandboxLimit.WALL_CLOCK
            _kill_group(process.pid)
            returncode = process.wait()
        wall = time.monotonic() - started
        text, truncated = _read_bounded(output, limits.output_bytes)
        # A writer stopped by the file-size limit often cannot even print why (its stderr is this file).
        output_full = output.seek(0, os.SEEK_END) >= limits.file_size_mib * 1024 * 1024
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
    if limit is None and returncode != 0:  # a run that succeeded was not stopped, whatever it printed
        # SIGKILL is the hard CPU limit (soft + 5 s) only if the run lasted long enough to use that much
        # CPU on all cores; sooner it killed itself (or something else did).
        hard_cpu = wall >= (limits.cpu_seconds + 5) / (os.cpu_count() or 1)
        limit = SandboxLimit.FILE_SIZE if output_full else _limit_hit(sig, text, hard_cpu=hard_cpu)
    return SandboxResult(
        exit_code=exit_code,
        signal=sig,
        limit=limit,
        output=text,
        output_truncated=truncated,
        wall_seconds=round(wall, 3),
    )


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
