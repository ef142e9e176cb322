"""One cgroup per sandbox run, so that the run's totals are bounded, not only each process's: memory (the
memory controller charges shared memory, tmpfs and memfd pages too), processes (pids.max) and CPU time
(the run's usage, which the waiter in sandbox.py polls and stops the run over).

The run's cgroup is a child of the worker's own cgroup, never of the root, so whatever bounds the worker
still bounds its runs. The sandbox's first process joins it before it execs bubblewrap, so bubblewrap
and everything it starts are counted. cgroup v2 (one hierarchy with cgroup.controllers: as root, or in
a subtree delegated to the worker's user) and v1 (one hierarchy per controller) are both supported; on a
v2 host whose worker shares its cgroup with no other process, the worker moves itself into a leaf
(`autarky-worker`) so that its cgroup may enable controllers for its children, as systemd's delegation
rules ask. What the machine does not offer, or does not let this user write, stays unbounded and is said
so (`RunCgroup.unbounded`, with why), so that the caller can refuse to run what must not run without it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

# The totals a cgroup bounds, named like the limits in SandboxLimit.
MEMORY, PROCESSES, CPU = "memory", "processes", "cpu_seconds"
TOTALS = (MEMORY, PROCESSES, CPU)
V1_CONTROLLERS = {MEMORY: "memory", PROCESSES: "pids", CPU: "cpuacct"}
V2_CONTROLLERS = {MEMORY: "memory", PROCESSES: "pids"}  # CPU usage (cpu.stat) is kept for every v2 cgroup
WORKER_LEAF = "autarky-worker"
PREFIX = "autarky-sandbox-"
PROCS = "cgroup.procs"
MIB = 1024 * 1024
# A run's cgroup left behind by a worker that died (empty: its sandbox died with it) is removed by the next
# worker that makes runs there, once it is surely not a live run's (no run lasts a day).
STALE_SECONDS = 24 * 3600
_swept: set[Path] = set()


@dataclass
class Layout:
    """Where this process's run cgroups are made: per total, the parent directory, or why there is none."""

    version: int | None = None
    parents: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mounts() -> list[tuple[str, str, str, list[str]]]:
    """cgroup mounts: (root within the hierarchy, mount point, fstype, super options)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = [*right.split(), "", "", ""][:3]
        if fstype in ("cgroup", "cgroup2"):
            fields = left.split()
            found.append((_unescape(fields[3]), _unescape(fields[4]), fstype, options.split(",")))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup per v1 controller, and "" for the v2 hierarchy."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            paths[name] = path
    return paths


def _within(mount_root: str, path: str) -> str | None:
    """`path` (as /proc/self/cgroup shows it) relative to a mount of the hierarchy at `mount_root`."""
    if mount_root == "/":
        return path.lstrip("/")
    if path == mount_root or path.startswith(mount_root.rstrip("/") + "/"):
        return path[len(mount_root) :].lstrip("/")
    return None


def _read(path: Path) -> str:
    return path.read_text()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _keyed(path: Path, key: str) -> int | None:
    """A "key value" line's value (memory.events, pids.events, cpu.stat, memory.oom_control)."""
    try:
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def _v2_base(mounts: list[tuple[str, str, str, list[str]]], paths: dict[str, str]) -> Path | None:
    for root, mountpoint, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in paths:
            rel = _within(root, paths[""])
            if rel is not None:
                base = Path(mountpoint) / rel
                return base.parent if base.name == WORKER_LEAF else base
    return None


def layout() -> Layout:
    """What this machine offers this process: cgroup v2 when its hierarchy holds the memory controller,
    else v1 hierarchies, each checked for being writable by this user."""
    mounts, paths = _mounts(), _own_paths()
    base = _v2_base(mounts, paths)
    available = set()
    if base is not None:
        with contextlib.suppress(OSError):
            available = set(_read(base / "cgroup.controllers").split())
    if base is not None and "memory" in available:
        result = Layout(version=2)
        for total in TOTALS:
            controller = V2_CONTROLLERS.get(total)
            if controller is not None and controller not in available:
                result.missing[total] = f"cgroup v2 controller {controller} is not offered in {base}"
            elif not os.access(base, os.W_OK):
                result.missing[total] = f"{base} is not writable by uid {os.geteuid()} (delegate it)"
            else:
                result.parents[total] = base
        return result
    result = Layout(version=1)
    for total, controller in V1_CONTROLLERS.items():
        where = [
            (Path(mountpoint) / rel)
            for root, mountpoint, fstype, options in mounts
            if fstype == "cgroup" and controller in options and controller in paths
            for rel in [_within(root, paths[controller])]
            if rel is not None
        ]
        if not where:
            result.missing[total] = f"no cgroup hierarchy with the {controller} controller is mounted"
        elif not os.access(where[0], os.W_OK):
            result.missing[total] = f"{where[0]} is not writable by uid {os.geteuid()} (delegate it)"
        else:
            result.parents[total] = where[0]
    if not result.parents:
        result.version = None
    return result


def _enable_v2(base: Path, controllers: set[str]) -> str | None:
    """Let `base`'s children use `controllers`; None, or why not."""
    try:
        enabled = set(_read(base / "cgroup.subtree_control").split())
    except OSError as e:
        return f"cannot read {base}/cgroup.subtree_control: {e.strerror}"
    wanted = controllers - enabled
    if not wanted:
        return None
    request = " ".join(f"+{c}" for c in sorted(wanted))
    try:
        _write(base / "cgroup.subtree_control", request)
        return None
    except OSError as e:
        if e.errno != errno.EBUSY:
            return f"cannot enable {request} in {base}/cgroup.subtree_control: {e.strerror}"
    # "No internal processes": a cgroup with processes of its own cannot give controllers to children.
    try:
        procs = _read(base / PROCS).split()
        if procs != [str(os.getpid())]:
            return (
                f"{base} holds other processes than the worker ({len(procs)}): give the worker a cgroup of "
                "its own (systemd: a service with Delegate=yes)"
            )
        leaf = base / WORKER_LEAF
        leaf.mkdir(exist_ok=True)
        _write(leaf / PROCS, str(os.getpid()))
        _write(base / "cgroup.subtree_control", request)
    except OSError as e:
        return f"cannot move the worker into {base}/{WORKER_LEAF} to delegate {request}: {e.strerror}"
    return None


def _sweep(parent: Path) -> None:
    if parent in _swept:
        return
    _swept.add(parent)
    with contextlib.suppress(OSError):
        for stale in parent.glob(f"{PREFIX}*"):
            with contextlib.suppress(OSError):  # not empty, or not ours to remove: left alone
                if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                    stale.rmdir()


class RunCgroup:
    """The cgroup(s) of one run: made by `create`, joined by the run's first process (`join_files`), read
    while and after it runs, killed and removed by `remove`."""

    def __init__(self, version: int | None) -> None:
        self.version = version
        self.name = f"{PREFIX}{secrets.token_hex(6)}"
        self.dirs: dict[str, Path] = {}  # total -> the run's cgroup that bounds it
        self.unbounded: dict[str, str] = {}  # total -> why it is not bounded
        self.protections: list[str] = []

    @classmethod
    def create(cls, memory_mib: int, processes: int, cpu_seconds: float) -> RunCgroup:
        """The run's cgroups with their limits; never raises: what could not be bounded is `unbounded`."""
        found = layout()
        run = cls(found.version)
        run.unbounded.update(found.missing)
        if found.version == 2 and found.parents:
            base = next(iter(found.parents.values()))
            wanted = {V2_CONTROLLERS[t] for t in found.parents if t in V2_CONTROLLERS}
            problem = _enable_v2(base, wanted)
            if problem:
                run.unbounded.update({t: problem for t in found.parents})
                found.parents = {}
        made: dict[Path, Path] = {}
        for total, parent in found.parents.items():
            _sweep(parent)
            try:
                if parent not in made:
                    (parent / run.name).mkdir()
                    made[parent] = parent / run.name
                run.dirs[total] = made[parent]
                run._limit(total, made[parent], memory_mib, processes, cpu_seconds)
            except OSError as e:
                run.unbounded[total] = f"cgroup {parent / run.name}: {e.strerror or e}"
                run.dirs.pop(total, None)
        if found.version == 2 and run.dirs:
            with contextlib.suppress(OSError):  # an OOM kills the whole run, not one of its processes
                _write(next(iter(run.dirs.values())) / "memory.oom.group", "1")
        used = {d for d in made.values() if d in run.dirs.values()}
        for directory in set(made.values()) - used:
            with contextlib.suppress(OSError):
                directory.rmdir()
        return run

    def _limit(self, total: str, directory: Path, memory_mib: int, processes: int, cpu: float) -> None:
        how = f"cgroup v{self.version}"
        if total == MEMORY:
            limit = str(memory_mib * MIB)
            if self.version == 2:
                _write(directory / "memory.max", limit)
                if (directory / "memory.swap.max").exists():
                    _write(directory / "memory.swap.max", "0")
            else:
                _write(directory / "memory.limit_in_bytes", limit)
                if (directory / "memory.memsw.limit_in_bytes").exists():  # swap too, where it is counted
                    _write(directory / "memory.memsw.limit_in_bytes", limit)
            self.protections.append(f"{how}: memory ≤ {memory_mib} MiB in total (shared memory included)")
        elif total == PROCESSES:
            _write(directory / "pids.max", str(processes))
            self.protections.append(f"{how}: ≤ {processes} processes in total")
        elif total == CPU:
            if self.cpu_seconds() is None:
                raise OSError(errno.ENOENT, "its CPU usage cannot be read")
            self.protections.append(f"{how}: CPU ≤ {cpu:g} s in total (polled)")

    @property
    def join_files(self) -> list[str]:
        """The cgroup.procs files the run's first process writes its pid to, before exec."""
        return sorted({str(d / PROCS) for d in self.dirs.values()})

    def cpu_seconds(self) -> float | None:
        """CPU time used by everything in the run so far (None: not counted)."""
        directory = self.dirs.get(CPU)
        if directory is None:
            return None
        if self.version == 2:
            usec = _keyed(directory / "cpu.stat", "usage_usec")
            return None if usec is None else usec / 1e6
        try:
            return int(_read(directory / "cpuacct.usage")) / 1e9
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """Processes the kernel killed because the run's memory was full."""
        directory = self.dirs.get(MEMORY)
        if directory is None:
            return 0
        if self.version == 2:
            return _keyed(directory / "memory.events", "oom_kill") or 0
        kills = _keyed(directory / "memory.oom_control", "oom_kill")
        if kills is not None:
            return kills
        try:  # kernels before 4.13 do not count kills: that the limit was hit at all
            return int(_read(directory / "memory.failcnt"))
        except (OSError, ValueError):
            return 0

    def refused_forks(self) -> int:
        """Forks refused because the run had as many processes as pids.max."""
        directory = self.dirs.get(PROCESSES)
        return 0 if directory is None else _keyed(directory / "pids.events", "max") or 0

    def memory_peak_mib(self) -> float | None:
        directory = self.dirs.get(MEMORY)
        if directory is None:
            return None
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return round(int(_read(directory / name)) / MIB, 1)
        except (OSError, ValueError):
            return None

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in set(self.dirs.values()):
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in _read(directory / PROCS).split())
        return found

    def kill(self, seconds: float = 5.0) -> None:
        """SIGKILL everything still in the run's cgroups, until they are empty (or `seconds` passed)."""
        for directory in set(self.dirs.values()):
            if self.version == 2 and (directory / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    _write(directory / "cgroup.kill", "1")
        deadline = time.monotonic() + seconds
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                self._kill_if_ours(pid)
            time.sleep(0.01)

    def _kill_if_ours(self, pid: int) -> None:
        # Through a pidfd, after checking the process is in this run's cgroup: a pid read from
        # cgroup.procs may have ended and been reused by an unrelated process since.
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            if self.name in Path(f"/proc/{pid}/cgroup").read_text():
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Kill what is left, then remove the run's cgroups (an empty cgroup can take a moment to go)."""
        self.kill()
        for directory in set(self.dirs.values()):
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)


# ---------------------------------------------------------------- where no pids cgroup bounds processes


def tasks_of(uid: int) -> int:
    """Tasks (threads) whose real uid is `uid`: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        with contextlib.suppress(KeyError, ValueError, IndexError):
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
    return count


def process_budget(processes: int, run_as: int | None, run: RunCgroup) -> tuple[int, list[str]]:
    """RLIMIT_NPROC for a run of at most `processes` tasks, run as `run_as` (a uid of its own) or as this
    process's uid; and what bounds the run's processes where its cgroup does not (then no longer
    unbounded)."""
    bounded = PROCESSES in run.dirs
    if run_as is not None:  # RLIMIT_NPROC counts the run's own uid: the run's processes and nothing else
        run.unbounded.pop(PROCESSES, None)
        return processes, [] if bounded else [f"≤ {processes} processes (a uid of its own)"]
    # RLIMIT_NPROC counts every task of the worker's uid (a desktop has hundreds), so the run's budget
    # comes on top of those. With a pids cgroup bounding the run, it leaves room for runs side by side.
    tasks = tasks_of(os.getuid())
    if bounded:
        return tasks + 4 * processes + 64, []
    run.unbounded.pop(PROCESSES, None)
    return tasks + processes, [
        f"≤ {processes} processes more than the {tasks} of uid {os.getuid()} (RLIMIT_NPROC)"
    ]
