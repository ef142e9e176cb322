"""The layering, checked: the import-linter contracts in pyproject.toml, no import cycle between the product's
modules, and no product file longer than a reader can hold."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("autarky", "activities", "workflows", "workers", "schedules")
MAX_LINES = 600


def test_the_import_contracts_are_kept() -> None:
    linter = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(linter), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_import_cycle_between_modules() -> None:
    """Imports inside functions count too: an inline import that dodges a cycle is still one."""
    graph = grimp.build_graph(*PRODUCT, cache_dir=None)
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    cycles = [
        _a_cycle(component, imports) for component in _strongly_connected(imports) if len(component) > 1
    ]
    described = ["\n".join(_describe(cycle, graph)) for cycle in cycles]
    assert not cycles, "import cycles:\n\n" + "\n\n".join(described)


def test_no_product_file_is_over_600_lines() -> None:
    lengths = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for package in PRODUCT
        for path in (ROOT / package).rglob("*.py")
    }
    over = {path: n for path, n in sorted(lengths.items()) if n > MAX_LINES}
    assert not over, f"over {MAX_LINES} lines: " + ", ".join(f"{path} ({n})" for path, n in over.items())


def _strongly_connected(imports: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit to mind)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(imports):
        if start in index:
            continue
        work = [(start, iter(sorted(imports[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(imports[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def _a_cycle(component: set[str], imports: Mapping[str, Iterable[str]]) -> list[str]:
    """The shortest way from the component's first module back to itself, inside the component."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(imports[node]):
            if successor not in component or successor in came_from:
                continue
            came_from[successor] = node
            if successor == start:
                path = [start]
                while path[-1] != start or len(path) == 1:
                    path.append(came_from[path[-1]])
                return path[::-1]
            queue.append(successor)
    raise AssertionError(f"{start} is in a cycle that cannot be found")  # Tarjan said it is


def _describe(cycle: list[str], graph: grimp.ImportGraph) -> Iterable[str]:
    for importer, imported in itertools.pairwise(cycle):
        details = graph.get_import_details(importer=importer, imported=imported)
        lines = sorted(detail["line_number"] for detail in details)
        yield f"  {importer} -> {imported} (line {', '.join(map(str, lines))})"


def test_a_cycle_is_found_and_named() -> None:
    """The cycle search itself, on a made-up graph: a → b → c → a beside an acyclic d → a."""
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    components = [c for c in _strongly_connected(imports) if len(c) > 1]
    assert components == [{"a", "b", "c"}]
    assert _a_cycle(components[0], imports) == ["a", "b", "c", "a"]
