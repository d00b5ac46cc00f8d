"""The import graph of backmark's files: no cycle, and no arrow from a lower layer up.

The graph is built from the source with ``ast``, every import counted, those inside functions too (a lazy
import is still a dependency: it only moves the failure to the moment it runs). An edge goes from a file
to the file it names: ``from backmark.x import y`` points at ``backmark/x/y.py`` if that is a module,
else at ``backmark/x`` (its ``__init__.py``). docs/architecture.md draws the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import backmark

SRC = Path(backmark.__file__).resolve().parent.parent

# Bottom first: a file may import its own package and the packages of lower layers, nothing above.
# The keys are the names under backmark/ (a package or a single module); "" is the package's root.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "constants", "log", "atomic", "infra"}),  # generic, no feature
    frozenset({"triggers", "data", "models", "identity"}),  # pixels, datasets, networks, signatures
    frozenset({"keys", "sibling_record"}),  # KeyGen: triggers, labels, commitments (and the siblings')
    frozenset({"training"}),  # the one trainer
    frozenset({"targets"}),  # what verification queries
    frozenset({"verify", "embed", "attacks", "export", "lineage", "contrast"}),  # Verify, Mark, attacks
    frozenset({"public", "ledger", "response", "claim"}),  # protocols over the above
    frozenset({"serve"}),  # the server
    frozenset({"study"}),  # experiments: attacks measured, reports, benchmarks' shared parts
    frozenset({"cli"}),  # parses and calls
    frozenset({"", "__main__", "api", "lightning"}),  # the front door: the public API
)

# Edges that break the rule, each with its reason; an edge listed here that no longer exists fails too,
# so the list only shrinks.
ALLOWED: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "backmark").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names if a.name.split(".")[0] == "backmark")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "backmark":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else _resolve(base))
    found.discard(None)
    found.discard(module)
    return {m for m in found if m is not None}


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one file (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else ""
    for i, layer in enumerate(LAYERS):
        if name in layer:
            return i
    raise AssertionError(f"{module}: backmark/{name} is in no layer of tests/test_architecture.py")


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    assert len(MODULES) > 100
    assert "backmark.errors" in GRAPH["backmark.atomic"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_files() -> None:
    """No cycle but through the listed exceptions (each of which is also an arrow the layers forbid)."""
    graph = {m: {t for t in targets if (m, t) not in ALLOWED} for m, targets in GRAPH.items()}
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_file_is_in_a_layer(module: str) -> None:
    _layer(module)


def test_no_arrow_from_a_lower_layer_up() -> None:
    up = sorted(
        (m, t)
        for m, targets in GRAPH.items()
        for t in targets
        if _layer(t) > _layer(m) and (m, t) not in ALLOWED
    )
    assert up == []


def test_every_allowed_exception_still_exists() -> None:
    gone = [edge for edge in ALLOWED if edge[1] not in GRAPH.get(edge[0], set())]
    assert gone == [], f"remove from ALLOWED: {gone}"


def test_the_version_lives_low_in_the_layering() -> None:
    from backmark.constants import VERSION

    assert backmark.__version__ == VERSION
