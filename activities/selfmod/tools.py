"""The programs and modules self-modification needs on the worker's machine, and how to install each.

A missing one fails the activity that needs it at once (`ToolMissing`, which the activities turn into a
non-retryable error naming the install command) instead of failing every candidate three times; a worker
says at start, in one log line, what it lacks (`startup_problems`), without refusing to start: a worker
that never runs self-modification does not need any of it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]

INSTALL = {
    "git": "`apt-get install git` (Debian/Ubuntu), `dnf install git` (Fedora)",
    "bwrap": "`apt-get install bubblewrap` (Debian/Ubuntu), `dnf install bubblewrap` (Fedora)",
    "setpriv": "`apt-get install util-linux` (needed when the worker runs as root)",
    "ruff": "`pip install ruff` into the worker's environment (an Autarky dependency: reinstall Autarky)",
    "pytest": "`pip install pytest` into the worker's environment (an Autarky dependency: reinstall Autarky)",
}
PROGRAMS = ("git", "bwrap", "setpriv", "ruff")
MODULES = ("pytest",)  # the agents' tests run with the worker's own Python, in the sandbox


class ToolMissing(RuntimeError):
    """A program or module self-modification needs is not installed; the message says how to install it."""


def find_program(name: str) -> str | None:
    """The program's path: beside this Python first (a virtualenv's ruff), then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def missing(names: Iterable[str]) -> list[str]:
    """One sentence per missing tool of `names`, with its install command."""
    found = []
    for name in names:
        if name == "setpriv" and os.geteuid() != 0:
            continue
        present = importlib.util.find_spec(name) is not None if name in MODULES else find_program(name)
        if not present:
            found.append(f"{name} is missing: {INSTALL[name]}")
    return found


def require(*names: str) -> None:
    problems = missing(names)
    if problems:
        raise ToolMissing(f"self-modification cannot run on this worker: {'; '.join(problems)}")


def program(name: str) -> str:
    """The path of a program self-modification needs; ToolMissing when it is not installed."""
    path = find_program(name)
    if path is None:
        require(name)
    return str(path)


def startup_problems(project_root: Path, test_files: Iterable[str]) -> list[str]:
    """What keeps this worker from running self-modification: missing tools, and the agents' tests when
    Autarky was installed without its source tree (a wheel or the Docker image)."""
    problems = missing((*PROGRAMS, *MODULES))
    absent = [t for t in test_files if not (project_root / t).is_file()]
    if absent:
        problems.append(
            f"the agents' tests ({', '.join(absent)}) are not under {project_root}: run self-modification "
            "on a worker started from a source checkout"
        )
    return problems


def log_startup_problems() -> list[str]:
    """At a worker's start: one warning line naming what self-modification lacks here, if anything."""
    from autarky.selfmod.agents import AGENTS

    problems = startup_problems(PROJECT_ROOT, [t for spec in AGENTS.values() for t in spec.test_files])
    if problems:
        log.warning("self-modification cannot run on this worker", problems="; ".join(problems))
    return problems
