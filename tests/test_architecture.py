"""The house's structure: lower stages never import higher ones, the library never imports the CLI, no cycles.

Read from the source with ``ast`` (every ``import``, also inside functions; ``if TYPE_CHECKING:`` blocks
are annotations only and are left out), so a lazy import cannot hide an upward dependency.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

NAS = Path(__file__).resolve().parents[1] / "nas"

# Stages of the flow, lowest first; a package may import its own stage and the ones before it. A space
# family with a folder of its own (nas.nb201) spans stages: each of its modules sits at its role's stage.
STAGES = [
    {"nas", "nas.errors", "nas.units", "nas.io", "nas.paths", "nas.reporting", "nas.plugins"},
    {"nas.blocks"},
    {"nas.space", "nas.nb201", "nas.nb201.space"},
    {"nas.cost", "nas.models", "nas.nb201.network"},
    {"nas.proxies", "nas.predictors", "nas.profile"},
    {"nas.latency", "nas.data"},
    {"nas.supernet", "nas.nb201.supernet"},
    {"nas.search", "nas.design"},
    {"nas.zoo"},
    {"nas.service", "nas.client"},
    {"nas.cli", "nas.__main__"},
]
# The block registry loads its plugins (the mixers register themselves into it): the one allowed cycle.
PLUGIN_CYCLE = {"nas.blocks.registry", "nas.blocks.layer", "nas.blocks.mixers"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in NAS.rglob("*.py"):
        parts = p.relative_to(NAS.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for c in child.orelse:
                    visit(c)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = defaultdict(set)

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            for t in targets:
                t = known(t) if t.startswith("nas") else None
                if t and t != mod:
                    edges[mod].add(t)
    return edges


def _stage(mod: str) -> int:
    parts = mod.split(".")
    for key in (mod, ".".join(parts[:2]), parts[0]):
        for i, group in enumerate(STAGES):
            if key in group:
                return i
    raise AssertionError(f"{mod}: in no stage of tests/test_architecture.py (add its package)")


def test_the_library_never_imports_the_cli():
    bad = sorted(f"{a} -> {b}" for a, bs in _graph().items() for b in bs
                 if b.startswith("nas.cli") and not a.startswith(("nas.cli", "nas.__main__")))
    assert not bad, bad


def test_lower_stages_never_import_higher_ones():
    bad = sorted(f"{a} -> {b}" for a, bs in _graph().items() for b in bs if _stage(b) > _stage(a))
    assert not bad, bad


def test_no_import_cycle_but_the_block_registry():
    edges = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            strong(v)
    allowed = [c for c in cycles if all(m in PLUGIN_CYCLE or m.startswith("nas.blocks.mixers") for m in c)]
    assert [c for c in cycles if c not in allowed] == []
    assert allowed, "the block registry's plugin loading is expected to be the one cycle"
