"""Static checks of a candidate's sources, before anything of it runs: it parses, it imports only what its
agent allows, it calls no dynamic import or eval, and ruff finds no error in it.

These run outside the sandbox because they only read the text (ruff is a trusted program); the code
itself runs only inside the sandbox. They are a first filter, not the guarantee: Python reaches any module
through attributes (`dataclasses.sys.modules["os"]`), so what a candidate can do is bounded by the
sandbox, and what it scores by the judge outside it.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autarky.selfmod.types import AgentSpec

# Ways to reach a module or run text as code that an import list cannot see.
FORBIDDEN_CALLS = {"__import__", "eval", "exec", "compile", "breakpoint"}
FORBIDDEN_MODULES = {"importlib", "ctypes", "subprocess", "socket", "os", "sys", "builtins"}
RUFF_RULES = "E,F,W,B"


def static_check(spec: AgentSpec, files: dict[str, str]) -> str | None:
    """None when every declared source passes, else the first problem in a sentence."""
    for path in spec.source_files:
        text = files.get(path)
        if text is None:
            return f"{path} is missing from the candidate"
        problem = check_source(path, text, spec.allowed_imports) or ruff_problem(path, text)
        if problem:
            return problem
    return None


def check_source(path: str, text: str, allowed: list[str]) -> str | None:
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        return f"{path}:{e.lineno}: does not parse: {e.msg}"
    for node in ast.walk(tree):
        for module in _imported(node):
            top = module.split(".")[0]
            permitted = any(module == a or module.startswith(a + ".") for a in allowed)
            if top in FORBIDDEN_MODULES or not permitted:
                return (
                    f"{path}:{node.lineno}: imports {module!r}, which this agent may not "
                    f"(allowed: {', '.join(allowed)})"
                )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            return f"{path}:{node.lineno}: calls {node.func.id}(), which no candidate may"
    return None


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: inside the package, which its own files already are
            return []
        return [node.module or ""]
    return []


def ruff_binary() -> list[str]:
    beside = Path(sys.executable).parent / "ruff"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    if found is None:
        raise FileNotFoundError("ruff is needed for candidates' static checks: pip install ruff")
    return [found]


def ruff_problem(path: str, text: str) -> str | None:
    """ruff's first error in the file, checked alone with fixed rules (not the project's settings)."""
    with tempfile.TemporaryDirectory(prefix="autarky-ruff-") as tmp:
        file = Path(tmp) / Path(path).name
        file.write_text(text)
        command = [*ruff_binary(), "check", "--isolated", "--no-cache", "--quiet", "--output-format=concise"]
        command += [f"--select={RUFF_RULES}", "--line-length=110", "--target-version=py311", str(file)]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if result.returncode == 0:
        return None
    first = (result.stdout or result.stderr).strip().splitlines()
    detail = first[0].replace(str(file), path) if first else f"ruff exit {result.returncode}"
    return f"ruff: {detail}"
