"""The package's import graph has no cycle.

Every module of ``conveyor_integrations`` is read with ``ast``; ALL its imports count (module
level, inside functions, under ``if TYPE_CHECKING:``). Relative imports are resolved.
``from . import x`` where ``x`` is a submodule imports that submodule; ``from .a import b``
imports ``.a`` (or ``.a.b`` alone when ``b`` is a submodule); importing a package means
importing its ``__init__``. Only edges inside the package are kept. The strongly connected
components of that graph (Tarjan) must all be single modules without a self-edge.
"""

from __future__ import annotations

import ast
import gc
from collections.abc import Collection, Iterator
from pathlib import Path

import conveyor_integrations

PACKAGE = "conveyor_integrations"
ROOT = Path(conveyor_integrations.__file__).resolve().parent


def module_files() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's ``__init__``)."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def imported_names(tree: ast.AST, module: str, is_pkg: bool,
                   modules: Collection[str]) -> Iterator[str]:
    """Every dotted module name this module's imports name (absolute)."""
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            yield from subs
            if len(subs) < len(node.names):
                yield target           # some name comes from the module (or package) itself


def _parse(path: Path) -> ast.AST:
    # CPython 3.11 can raise "SystemError: AST constructor recursion depth mismatch" when the
    # garbage collector runs a finalizer (an un-started coroutine of a test whose event loop
    # was closed) in the middle of ast.parse; collect first, and not during the parse
    gc.collect()
    gc.disable()
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    finally:
        gc.enable()


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, (path, is_pkg) in modules.items():
        tree = _parse(path)
        for target in imported_names(tree, name, is_pkg, modules):
            if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                continue
            # the deepest module of ours the name refers to (a package stands for its __init__)
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target:
                graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    return [c for c in strongly_connected(graph)
            if len(c) > 1 or c[0] in graph[c[0]]]


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert f"{PACKAGE}.adapters.langchain" in graph and f"{PACKAGE}.parsing" in graph
    assert f"{PACKAGE}.events" in graph[PACKAGE + ".parsing.openai_deltas"]   # from ..events import
    assert any(len(targets) > 3 for targets in graph.values())


def test_tarjan_finds_a_known_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(g)) == [["a", "b", "c"], ["e"]]


def test_no_import_cycle_inside_the_package() -> None:
    graph = import_graph()
    found = cycles(graph)
    lines = []
    for comp in sorted(found, key=len, reverse=True):
        members = set(comp)
        edges = sorted(f"{a} -> {b}" for a in comp for b in graph[a] if b in members)
        lines.append(f"cycle of {len(comp)} modules: {', '.join(comp)}\n  " + "\n  ".join(edges))
    assert not found, "import cycles in the package:\n" + "\n".join(lines)
