"""The package's import structure: no cycles, and the door never loads offline code.

Imports are read from the source with :mod:`ast` (module-level and inside functions alike), so a
lazy import cannot hide a cycle or an offline dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daemon"
OFFLINE = "daemon.offline"
#: Entry points of the door: ``avid run`` (through the command line) and the service itself.
RUNTIME_ROOTS = ("daemon.cli", "daemon.service.run")
#: Command handlers that are offline by nature and may import offline code inside their body.
OFFLINE_HANDLERS = {("daemon.commands", "calibrate")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules imported by a module, except inside the offline handlers."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
               and (name, fn.name) in OFFLINE_HANDLERS for n in ast.walk(fn)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from daemon.x import y` imports daemon.x.y when y is a module, else daemon.x.
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                       for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name and t != "daemon"}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], roots) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, f"import cycle: {' -> '.join(find_cycle(import_graph()))}"


def test_the_cycle_finder_finds_a_cycle():
    # The check above must be able to fail.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_door_imports_no_offline_module():
    graph = import_graph()
    runtime = reachable(graph, RUNTIME_ROOTS)
    assert "daemon.service.door" in runtime and "daemon.decide.evidence" in runtime
    offending = sorted((m, dep) for m in runtime for dep in graph[m] if dep.startswith(OFFLINE))
    assert offending == [], f"runtime modules importing offline code: {offending}"


def test_only_the_offline_handler_reaches_offline_code_from_the_cli():
    graph = import_graph()
    assert any(dep.startswith(OFFLINE) for dep in reachable(graph, [OFFLINE + ".calibrate"]))
    # Without the exemption the calibrate handler would be found: the walk sees inside functions.
    modules = all_modules()
    tree = ast.parse(modules["daemon.commands"].read_text())
    handler = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "calibrate")
    assert any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith(OFFLINE) for n in ast.walk(handler))


def test_avid_run_loads_no_offline_module_at_run_time():
    code = ("import sys, daemon.cli, daemon.service.run, daemon.commands; "
            "print(sorted(m for m in sys.modules if m.startswith('daemon.offline') or m in "
            "('scipy', 'sklearn', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "[]"
