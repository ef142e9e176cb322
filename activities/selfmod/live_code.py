"""Load the code of an agent's active version into the product, for agents whose product side runs in an
activity (the research analyser's relevance scorer).

A version whose sources differ from the shipped ones passed its tests in the sandbox, beat the incumbent on
data its search never saw and, being code, was approved by a person; promoted, it runs here, outside the
sandbox. It is exported once per commit and imported under a module name of its own: the shipped module
stays as it is, and a rollback simply selects the shipped (or another) version again.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from activities.selfmod.versions import AgentRepository


def load_version_module(root: Path, agent: str, commit: str, source: str) -> ModuleType:
    name = f"autarky_agent_{agent.replace('-', '_')}_{commit[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    dest = Path(root).absolute() / agent / "code" / commit
    path = dest / source
    if not path.exists():
        AgentRepository(root, agent).export(commit, dest)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pydantic look their module up while it executes
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
