"""Static checks of a candidate's sources, before anything of it runs: it parses, it imports only what its
agent allows, it reaches no module, builtin or object internals an import list cannot see, and ruff finds
no error in it.

This is defence in depth, not the guarantee. Python reaches any module through attributes
(`dataclasses.sys.modules["os"]`, `threading._os._exit`), and no list of names closes every path; the
sandbox bounds what a candidate can do, the signed test report (candidate_tests.py) what its tests can
claim, and the judge outside the sandbox what it scores. The checks refuse what an agent's code never
needs and escapes lean on:
- names that reach the interpreter: `getattr`/`setattr`/`delattr`, `vars`, `globals`, `locals`, `open`,
  `eval`, `exec`, `compile`, `__import__`, `__builtins__`, …;
- attributes, imported names and `match` class-pattern attributes that are private (`threading._sys`)
  except on `self`/`cls`, dunders (`__dict__`, `__globals__`, `__subclasses__`; `super().__init__` and
  `__name__`/`__qualname__`/`__doc__` are fine), or name modules and loaders (`x.sys`, `x.modules`);
- star imports (they bring whatever names a module holds), and format fields reading private attributes;
- the same inside string annotations, which pydantic and `typing.get_type_hints` evaluate.

They run outside the sandbox because they only read the text (ruff is a trusted program).
"""

from __future__ import annotations

import ast
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from activities.selfmod.tools import program
from autarky.selfmod.types import AgentSpec

FORBIDDEN_MODULES = {"importlib", "ctypes", "subprocess", "socket", "os", "sys", "builtins"}
# Names that reach modules, the interpreter or the file system, or run text as code.
FORBIDDEN_NAMES = {
    "__import__", "eval", "exec", "compile", "breakpoint", "getattr", "setattr", "delattr", "vars",
    "globals", "locals", "open", "input", "help", "memoryview", "__builtins__", "__loader__", "__spec__",
    "get_type_hints", "ForwardRef",
} | FORBIDDEN_MODULES  # fmt: skip
# Attribute (and imported) names that lead to a module, the import system or string evaluation.
FORBIDDEN_ATTRIBUTES = {
    "modules", "inspect", "gc", "io", "pathlib", "shutil", "signal", "marshal", "pickle", "runpy", "posix",
    "open", "system", "popen", "get_type_hints", "ForwardRef", "f_globals", "f_locals", "f_back",
    "gi_frame", "cr_frame", "tb_frame",
} | FORBIDDEN_MODULES  # fmt: skip
HARMLESS_DUNDERS = {"__name__", "__qualname__", "__doc__"}  # strings
DUNDER_NAMES = {"__name__", "__doc__", "__file__", "__all__", "__slots__", "__version__"}
SELF = {"self", "cls"}
FORMAT_READS_PRIVATE = re.compile(r"\{[^{}:!]*\.\s*_")  # "{0._os}": str.format reads attributes
RUFF_RULES = "E,F,W,B"


# CPython 3.11's parser is not safe across threads (gh-106905: "AST constructor recursion depth mismatch"),
# and a worker checks candidates in several threads at once.
_PARSE_LOCK = threading.Lock()


def _parse(source: str, **kwargs: str) -> ast.AST:
    with _PARSE_LOCK:
        return ast.parse(source, **kwargs)


def static_check(spec: AgentSpec, files: dict[str, str]) -> str | None:
    """None when every declared source passes, else the first problem in a sentence. ToolMissing when
    ruff is not installed."""
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
        tree = _parse(text, filename=path)
    except SyntaxError as e:
        return f"{path}:{e.lineno}: does not parse: {e.msg}"
    for node in _nodes(tree):
        problem = _import_problem(node, allowed) or _reach_problem(node)
        if problem:
            return f"{path}:{getattr(node, 'lineno', '?')}: {problem}"
    return None


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, and those of every string annotation (evaluated by pydantic and get_type_hints)."""
    for node in ast.walk(tree):
        yield node
        for annotation in _annotations(node):
            for inner in ast.walk(annotation):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    try:
                        parsed = _parse(inner.value, mode="eval")
                    except SyntaxError:
                        continue  # not code: nothing to evaluate
                    for sub in ast.walk(parsed):
                        ast.copy_location(sub, inner)
                        yield sub


def _annotations(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
        return [node.annotation]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
        return [node.returns]
    return []


def _import_problem(node: ast.AST, allowed: list[str]) -> str | None:
    if isinstance(node, ast.ImportFrom):
        if any(alias.name == "*" for alias in node.names):
            return f"imports * from {node.module or '.'!r}, which no candidate may (name what it uses)"
        for alias in node.names:
            if _forbidden_attribute(alias.name):
                return f"imports {alias.name!r} from {node.module or '.'!r}, which no candidate may"
    for module in _imported(node):
        top = module.split(".")[0]
        permitted = any(module == a or module.startswith(a + ".") for a in allowed)
        private = any(part.startswith("_") for part in module.split(".") if part != "__future__")
        if top in FORBIDDEN_MODULES or not permitted or private:
            return f"imports {module!r}, which this agent may not (allowed: {', '.join(allowed)})"
    return None


def _reach_problem(node: ast.AST) -> str | None:
    """Why `node` reaches past what an import list can see, or None."""
    if isinstance(node, ast.Name):
        dunder = node.id.startswith("__") and node.id.endswith("__") and node.id not in DUNDER_NAMES
        if node.id in FORBIDDEN_NAMES or dunder:
            return f"uses {node.id!r}, which no candidate may"
    if isinstance(node, ast.Attribute) and _attribute_problem(node):
        return f"reads attribute {node.attr!r} ({_attribute_problem(node)}), which no candidate may"
    if isinstance(node, ast.MatchClass):  # `case object(_sys=s)` reads the attribute too
        for attr in node.kwd_attrs:
            if _forbidden_attribute(attr):
                return f"matches attribute {attr!r}, which no candidate may"
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and FORMAT_READS_PRIVATE.search(node.value)
    ):
        return "holds a format field that reads a private attribute ('{0._x}'), which no candidate may"
    return None


def _attribute_problem(node: ast.Attribute) -> str | None:
    attr = node.attr
    if attr.startswith("__") and attr.endswith("__"):
        on_super = attr == "__init__" and _is_super_call(node.value)
        return None if attr in HARMLESS_DUNDERS or on_super else "a dunder"
    if attr.startswith("_"):
        mine = isinstance(node.value, ast.Name) and node.value.id in SELF
        return None if mine else "private, not of self or cls"
    return "it leads to modules or evaluation" if attr in FORBIDDEN_ATTRIBUTES else None


def _forbidden_attribute(name: str) -> bool:
    return (name.startswith("_") and name not in HARMLESS_DUNDERS) or name in FORBIDDEN_ATTRIBUTES


def _is_super_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: inside the package, which its own files already are
            return []
        return [node.module or ""]
    return []


def ruff_binary() -> list[str]:
    """ruff beside this Python (the virtualenv's), else on PATH; ToolMissing naming the install."""
    return [program("ruff")]


def ruff_problem(path: str, text: str) -> str | None:
    """ruff's first error in the file, checked alone with fixed rules (not the project's settings)."""
    binary = ruff_binary()
    with tempfile.TemporaryDirectory(prefix="autarky-ruff-") as tmp:
        file = Path(tmp) / Path(path).name
        file.write_text(text)
        command = [*binary, "check", "--isolated", "--no-cache", "--quiet", "--output-format=concise"]
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
