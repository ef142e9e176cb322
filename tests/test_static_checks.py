"""The static checks of a candidate's sources (activities/selfmod/static_checks.py): the agents' own code
passes, the ways past an import list are refused, and a missing tool says how to install it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from activities.selfmod import tools
from activities.selfmod.activities import PROJECT_ROOT
from activities.selfmod.static_checks import check_source, static_check
from activities.selfmod.tools import ToolMissing
from autarky.selfmod.agents import AGENTS, RELEVANCE_SCORER

ALLOWED = RELEVANCE_SCORER.allowed_imports  # the widest: it has threading


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_the_shipped_sources_pass(agent: str) -> None:
    spec = AGENTS[agent]
    assert static_check(spec, {p: (PROJECT_ROOT / p).read_text() for p in spec.source_files}) is None


REFUSED = {
    # The demonstrated bypass, and its parts.
    "threading trick": (
        'import threading\nif "_pytest" in threading._sys.modules:\n    threading._os._exit(0)\n'
    ),
    "private module attribute": "import threading\nx = threading._os\n",
    "private attribute of another object": "def f(o):\n    return o._secret\n",
    "module through a public attribute": "import dataclasses\nx = dataclasses.sys\n",
    "sys.modules through anything": "def f(m):\n    return m.modules\n",
    "private name imported": "from threading import _sys\n",
    "module imported by name": "from dataclasses import sys\n",
    "private module": "import collections._x\n",
    "star import": "from bm25s import *\n",
    "__dict__": "class A:\n    pass\n\n\nx = A.__dict__\n",
    "__dict__ of self": "class A:\n    def f(self):\n        return self.__dict__\n",
    "__subclasses__": "x = object.__subclasses__()\n",
    "__globals__": "def f():\n    pass\n\n\nx = f.__globals__\n",
    "__class__": "x = ().__class__\n",
    "__builtins__": "x = __builtins__\n",
    "getattr": "import threading\nx = getattr(threading, '_os')\n",
    "getattr kept in a name": "g = getattr\n",
    "setattr": "setattr(1, 'x', 2)\n",
    "delattr": "delattr(1, 'x')\n",
    "vars": "x = vars()\n",
    "globals": "x = globals()\n",
    "locals": "x = locals()\n",
    "open": "x = open('/etc/passwd')\n",
    "eval": "x = eval('1')\n",
    "__import__": "x = __import__('os')\n",
    "a forbidden module": "import os\n",
    "a module the agent may not use": "import json\n",
    "match reads a private attribute": (
        "import threading\nmatch threading:\n    case object(_sys=s):\n        pass\n"
    ),
    "string annotation evaluated by pydantic": "def f(x: \"__import__('os')\") -> None:\n    pass\n",
    "string annotation nested": "x: list[\"getattr(1, 'y')\"] = []\n",
    "format reads a private attribute": "import threading\nx = '{0._os}'.format(threading)\n",
    "frame of a generator": "def g():\n    yield 1\n\n\nx = g().gi_frame\n",
}


@pytest.mark.parametrize("how", sorted(REFUSED))
def test_a_way_past_the_import_list_is_refused(how: str) -> None:
    problem = check_source("x.py", REFUSED[how], ALLOWED)
    assert problem is not None, how
    assert problem.startswith("x.py:") and ("no candidate may" in problem or "may not" in problem), problem


ALLOWED_CODE = {
    "own private attributes": (
        "class A:\n    def __init__(self):\n        self._x = 1\n        self.__y = 2\n"
    ),
    "class private attributes": (
        "class A:\n    _n = 0\n\n    @classmethod\n    def f(cls):\n        return cls._n\n"
    ),
    "super().__init__": "class A(dict):\n    def __init__(self):\n        super().__init__()\n",
    "__name__ and __doc__": (
        "def f():\n    return f.__name__, f.__doc__\n\n\nif __name__ == '__main__':\n    f()\n"
    ),
    "__future__": "from __future__ import annotations\n",
    "format spec": "x = '{:.2f} {0!r} {name}'.format(1.0, name='n')\n",
    "string annotation that is not code": 'x: "list[int]" = []\n',
    "private module-level names": "_CACHE = {}\n\n\ndef _f():\n    return _CACHE\n",
}


@pytest.mark.parametrize("how", sorted(ALLOWED_CODE))
def test_what_an_agent_legitimately_writes_passes(how: str) -> None:
    assert check_source("x.py", ALLOWED_CODE[how], ALLOWED) is None


def without_programs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: tuple[str, ...] = ()) -> None:
    """PATH with only `keep`, and a Python with no programs beside it: as a plain install looks."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in keep:
        found = tools.find_program(name)
        assert found, name
        (bin_dir / name).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr("sys.executable", str(tmp_path / "env" / "bin" / "python"))


def test_without_ruff_the_static_check_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_programs(tmp_path, monkeypatch)
    spec = RELEVANCE_SCORER
    with pytest.raises(ToolMissing, match=r"ruff is missing: `pip install ruff`"):
        static_check(spec, {p: (PROJECT_ROOT / p).read_text() for p in spec.source_files})


def test_ruff_beside_the_python_is_found_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_bin = tmp_path / "env" / "bin"
    env_bin.mkdir(parents=True)
    ruff = env_bin / "ruff"
    ruff.write_text("#!/bin/sh\nexit 0\n")
    ruff.chmod(0o755)
    monkeypatch.setattr("sys.executable", str(env_bin / "python"))
    assert tools.find_program("ruff") == str(ruff)


def test_missing_tools_are_named_with_their_install_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_programs(tmp_path, monkeypatch)
    problems = tools.missing(tools.PROGRAMS)
    text = "; ".join(problems)
    assert "git is missing: `apt-get install git`" in text
    assert "bwrap is missing: `apt-get install bubblewrap`" in text
    assert "ruff is missing: `pip install ruff`" in text
    assert ("setpriv is missing" in text) == (os.geteuid() == 0)
    with pytest.raises(ToolMissing, match="self-modification cannot run on this worker: git is missing"):
        tools.require("git")


def test_the_worker_says_at_start_what_self_modification_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_programs(tmp_path, monkeypatch, keep=("git", "bwrap", "setpriv"))
    with capture_logs() as logs:
        problems = tools.log_startup_problems()
    assert problems and all("ruff" in p for p in problems)
    [line] = [e for e in logs if e["event"] == "self-modification cannot run on this worker"]
    assert line["log_level"] == "warning" and "pip install ruff" in line["problems"]


def test_an_install_without_the_source_tree_is_told_to_use_a_checkout(tmp_path: Path) -> None:
    problems = tools.startup_problems(tmp_path, ["tests/test_relevance.py"])
    assert any("source checkout" in p and "tests/test_relevance.py" in p for p in problems)
    assert not any(
        "source checkout" in p for p in tools.startup_problems(PROJECT_ROOT, ["tests/test_relevance.py"])
    )
