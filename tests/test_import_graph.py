"""The layers of ``llmnas_local`` import one way: neither its modules nor its packages import each other in a cycle.

Every import statement counts, those inside functions too (an import deferred for speed is still a dependency);
only imports under ``if TYPE_CHECKING:`` are left out (they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmnas_local"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the package it imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        nodes = [ast.parse(path.read_text())]
        while nodes:
            for node in ast.iter_child_nodes(nodes.pop()):
                if isinstance(node, ast.If) and _type_checking(node):
                    nodes.extend(node.orelse)
                    continue
                if isinstance(node, ast.Import):
                    graph[module].update(a.name for a in node.names if a.name in modules)
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        up = package.split(".")[:len(package.split(".")) - node.level + 1]
                        base = ".".join(up + ([node.module] if node.module else []))
                    for alias in node.names:
                        target = f"{base}.{alias.name}"
                        graph[module].add(target if target in modules else base)
                nodes.append(node)
        graph[module] &= modules.keys()
        graph[module].discard(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def layer(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {layer(m): set() for m in graph}
    for m, targets in graph.items():
        out[layer(m)].update(layer(t) for t in targets if layer(t) != layer(m))
    return out


def test_the_graph_sees_deferred_imports():
    graph = import_graph()
    assert "llmnas_local.dsl.sampler" in graph["llmnas_local.dsl.base"]          # imported inside a function
    assert "llmnas_local.evaluators.proxy" in graph["llmnas_local.evaluators.worker"]


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_no_package_imports_itself_through_others():
    """dsl, builder, evaluators, ... form layers: e.g. the builders read the dsl's specs, the dsl never imports a
    builder (a space names its builder and finds it when it builds)."""
    packages = _package_graph(import_graph())
    assert cycles(packages) == []
    assert "llmnas_local.builder" not in packages["llmnas_local.dsl"]
