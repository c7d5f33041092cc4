"""The package's import graph has no cycles: every module of azr/ only imports modules below it, and so does
every folder of it taken as one piece.

Imports inside functions count too (a lazy import still ties two modules together); imports under
``if TYPE_CHECKING:`` do not (they never run). A cycle is reported with the lines that close it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "azr"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported azr module: line of the first such import}. ``from azr.x import y`` names the
    submodule ``azr.x.y`` when there is one, else the package ``azr.x``."""
    files = {module_name(p, package.parent): p for p in package.rglob("*.py")}
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        edges: dict[str, int] = {}
        is_pkg = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod for a in node.names]
            for t in targets:
                while t and t not in files:  # `import azr.eval.runner` names a module; `import azr` the package
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("azr"):
                    edges[t] = min(edges.get(t, node.lineno), node.lineno)
        graph[name] = edges
    return graph


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` except the bodies of ``if TYPE_CHECKING:`` (imports for annotations never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def rooms(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The graph with each subpackage folded into one node (``azr.eval.command`` -> ``azr.eval``): a module that
    imports a folder and a module of that folder that imports it back tie the two together just the same."""
    def room(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, dict[str, int]] = {}
    for a, edges in graph.items():
        for b, line in edges.items():
            if room(a) != room(b):
                out.setdefault(room(a), {}).setdefault(room(b), line)
        out.setdefault(room(a), {})
    return out


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for start in sorted(graph):
        if colour.get(start) is None and (found := visit(start)):
            return found
    return None


def test_finder_reports_a_cycle_and_passes_a_chain():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {}}) is None
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 3}}) == ["a", "b", "c", "a"]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A throwaway `azr` package under `tmp_path`: {path relative to it: source}."""
    pkg = tmp_path / "azr"
    for rel, text in {"__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_graph_reads_lazy_and_from_imports(tmp_path):
    graph = import_graph(_package(tmp_path, {
        "sub/__init__.py": "from azr.sub.leaf import x\n",
        "sub/leaf.py": "def g():\n    from azr import top\n",
        "top.py": "import azr.sub.leaf\nfrom azr.sub import leaf\n",
    }))
    assert graph["azr.sub.leaf"] == {"azr.top": 2}
    assert graph["azr.top"] == {"azr.sub.leaf": 1}
    assert find_cycle(graph) == ["azr.sub.leaf", "azr.top", "azr.sub.leaf"]


def test_graph_skips_type_checking_imports_and_folds_folders(tmp_path):
    graph = import_graph(_package(tmp_path, {
        "ev/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import azr.cfg\n",
        "ev/cmd.py": "import azr.cfg\n",
        "cfg.py": "def check():\n    from azr.ev import x\n",
    }))
    assert graph["azr.ev"] == {} and find_cycle(graph) is None  # module by module, no cycle
    assert find_cycle(rooms(graph)) == ["azr.cfg", "azr.ev", "azr.cfg"]  # folder by folder, one


@pytest.mark.parametrize("view", ["modules", "folders"])
def test_azr_has_no_import_cycle(view):
    graph = import_graph()
    assert len(graph) > 20, "the walk found too few modules; did the package move?"
    graph = rooms(graph) if view == "folders" else graph
    cycle = find_cycle(graph)
    if cycle:
        where = "; ".join(f"{a} imports {b} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:]))
        pytest.fail(f"import cycle between {view}: {' -> '.join(cycle)}: {where}")
