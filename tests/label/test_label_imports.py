"""The labeling code has no import circle, and nothing in it imports the command line.

Every import counts, also those inside functions: a function-level import is how a circle was
hidden before (the batch executor imported `pipeline.label`, its own caller).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipeline" / "labeling"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    files = [*PACKAGE.rglob("*.py"), ROOT / "pipeline" / "label.py"]
    known = {_module(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            deps |= {n for n in names if n in known}
        graph[_module(path)] = deps - {_module(path)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_and_no_import_of_the_cli() -> None:
    graph = _graph()
    assert "pipeline.labeling.batch" in graph and "pipeline.labeling.records" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    callers = sorted(m for m, deps in graph.items() if "pipeline.label" in deps)
    assert callers == [], f"{callers} import the command line"
    # records sit at the bottom: they import nothing of the package
    assert graph["pipeline.labeling.records"] == set()


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
