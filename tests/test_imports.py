"""The project's import graph (built from the source with ast): imports go one way,
resolver -> webui -> blocklists -> policy, and no modules import each other in a circle.
Imports under `if TYPE_CHECKING:` are for the type checker only and are left out; imports
inside functions (lazy imports) count: they hide a cycle, they do not remove it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("resolver", "webui", "blocklists", "policy")  # each may import those after it


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, in_function: bool = False) -> Iterator[tuple[str, bool, int]]:
    """(imported module, inside a function, line) for each import outside TYPE_CHECKING."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(child, in_function)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, in_function, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield (full if full in MODULES else node.module), in_function, node.lineno
        else:
            yield from _imports(
                node,
                in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef),
            )


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_lazy_imports() -> None:
    """Guard for the test itself: a function-level import is an edge."""
    tree = ast.parse("def f():\n    from webui import app\n")
    assert list(_imports(tree)) == [("webui.app", True, 2)]
    assert "resolver.cli" in _graph()["resolver.main"]


def test_imports_go_one_way_between_packages() -> None:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    wrong = [
        f"{source} imports {target}"
        for source, targets in _graph().items()
        for target in targets
        if rank[target.split(".")[0]] < rank[source.split(".")[0]]
    ]
    assert wrong == []


def test_no_import_cycle_at_all() -> None:
    assert _cycles(_graph()) == []


def test_the_wiring_goes_one_way() -> None:
    """main.py -> cli.py -> workers.py -> root.py -> assembly.py: the entry point, the commands,
    the DNS worker processes, the composition root, the DNS side. None imports one before it."""
    order = ["resolver.main", "resolver.cli", "resolver.workers", "resolver.root",
             "resolver.assembly"]
    graph = _graph()
    backwards = [
        f"{source} imports {target}"
        for i, source in enumerate(order)
        for target in order[:i]
        if target in graph[source]
    ]
    assert backwards == []
    assert graph["resolver.main"] & set(order) == {"resolver.cli"}


def test_webui_modules_import_each_other_at_the_top() -> None:
    """No lazy imports between web UI modules: each module's imports are at its top."""
    lazy = [
        f"{name}:{line} {target}"
        for name, path in MODULES.items()
        if name.startswith("webui")
        for target, in_function, line in _imports(ast.parse(path.read_text(encoding="utf-8")))
        if in_function and target.startswith("webui")
    ]
    assert lazy == []
