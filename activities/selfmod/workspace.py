"""The sandbox's work directory, bounded: inside, /sandbox is a size-capped tmpfs holding the entries the
caller prepared in the host's work directory (read-only) and the outputs it declared (writable, through
to the host). What a run can leave on the host's disk is therefore its declared outputs, each at most
file_size_mib (RLIMIT_FSIZE), however much it writes; the rest is memory of the run (its cgroup counts it)
and vanishes with it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from autarky.selfmod.types import SandboxLimits

MIB = 1024 * 1024


def scratch_bytes(limits: SandboxLimits) -> int:
    """The size of each writable tmpfs of a run (/sandbox, /tmp)."""
    return limits.file_size_mib * 4 * MIB


def declare_outputs(workdir: Path, outputs: Sequence[str]) -> list[str]:
    """The outputs as relative paths, each made an (empty) regular file in `workdir` for the run to write."""
    names = []
    for name in outputs:
        rel = PurePosixPath(name)
        if rel.is_absolute() or not rel.parts or ".." in rel.parts:
            raise ValueError(f"output {name!r} must be a path inside the work directory, like outputs.json")
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ValueError(f"output {name!r}: {path} exists and is not a regular file")
        path.touch()
        names.append(str(rel))
    return names


def workdir_mounts(workdir: Path, dest: str, limits: SandboxLimits, outputs: Sequence[str] = ()) -> list[str]:
    """bwrap arguments: `dest` a tmpfs of scratch_bytes, `workdir`'s entries read-only in it, the declared
    `outputs` (see declare_outputs) bound writable over them, and the command's working directory."""
    args = ["--size", str(scratch_bytes(limits)), "--perms", "1777", "--tmpfs", dest]
    for entry in sorted(os.scandir(workdir), key=lambda e: e.name):
        target = f"{dest}/{entry.name}"
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry.path), target]
        elif entry.is_dir() or entry.is_file():
            args += ["--ro-bind", entry.path, target]
    for name in outputs:
        args += ["--bind", str(workdir / name), f"{dest}/{name}"]
    return [*args, "--chdir", dest]
