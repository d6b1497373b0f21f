"""Imports inside edge_pcam point one way: no cycles, and each layer imports only the layers below it.

The graph is read from the source with `ast`, top-level and function-level
imports alike: an import placed inside a function to dodge a cycle still counts.
`from pkg import name` is an edge to `pkg.name` when that is a module, else to
`pkg`; a module's own parent packages (imported before it anyway) are not edges.
No TensorFlow is needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edge_pcam"

# Bottom to top. A module may import its own layer and those before it: the device runtime is the ground
# floor, the workstation side sits on it, the CLI and the demo on top of all.
LAYERS = (
    ("edge_pcam.errors", "edge_pcam.extras", "edge_pcam.architecture", "edge_pcam.runtime"),
    ("edge_pcam.model", "edge_pcam.data"),
    ("edge_pcam.training",),
    ("edge_pcam.export",),
    ("edge_pcam.bench",),
    ("edge_pcam.cli", "edge_pcam.demo", "edge_pcam.__main__"),
)


# Cycles known and not yet broken, each with what breaks it. The test fails on any other cycle, and on a
# listed one that is gone (then delete its line): the list only shrinks.
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under `package`."""
    files = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in files and t != name and t not in ancestors}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per group of modules that import each other."""
    return [_cycle_through(graph, group) for group in cycle_groups(graph)]


def cycle_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _cycle_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {group}")


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix naming `module`'s layer."""
    found = [(len(prefix), i) for i, group in enumerate(LAYERS) for prefix in group
             if module == prefix or module.startswith(prefix + ".")]
    if module == "edge_pcam":
        return 0
    if not found:
        raise AssertionError(f"{module}: in no layer; add it to LAYERS in {Path(__file__).name}")
    return max(found)[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files(PACKAGE))


def test_no_import_cycles(graph):
    groups = [frozenset(g) for g in cycle_groups(graph)]
    new = [_cycle_through(graph, set(g)) for g in groups if g not in KNOWN_CYCLES]
    assert not new, "import cycles: " + "; ".join(" -> ".join(c) for c in new)
    gone = set(KNOWN_CYCLES) - set(groups)
    assert not gone, f"changed or no longer a cycle, update KNOWN_CYCLES: {[sorted(g) for g in gone]}"


def test_imports_point_down_the_layers(graph):
    upward = [f"{m} -> {t}" for m, targets in sorted(graph.items()) for t in sorted(targets)
              if layer_of(t) > layer_of(m)]
    assert not upward, "imports against the layering: " + "; ".join(upward)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The graph builder itself: a cycle closed only by a function-level import is found, and so is one
    through a relative import; a child importing its parent package is not a cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n    return c\n")
    (pkg / "c.py").write_text("def g():\n    import pkg.a\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.d import h\n")
    (pkg / "sub" / "d.py").write_text("from pkg import sub\nfrom . import e\n\ndef h():\n    pass\n")
    (pkg / "sub" / "e.py").write_text("from .d import h\n")
    graph = import_graph(module_files(pkg))
    assert graph["pkg.b"] == {"pkg.c"} and graph["pkg.sub.d"] == {"pkg.sub.e"}
    cycles = sorted(find_cycles(graph))
    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"], ["pkg.sub.d", "pkg.sub.e", "pkg.sub.d"]]
