"""Shape of the code base (issue 14): no import cycles between a0verify's modules, and no module
over ~400 lines without a reason stated at its top."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "a0verify"
MAX_LINES = 420


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _exists(mod: str) -> bool:
    p = PKG.parent / mod.replace(".", "/")
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """{module: modules of a0verify it imports}, module-level and inside functions alike
    (``from pkg import sub`` counts as importing ``pkg.sub``; TYPE_CHECKING imports count)."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        mod = _module_name(path)
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] == "a0verify":
                subs = [f"{node.module}.{a.name}" for a in node.names
                        if _exists(f"{node.module}.{a.name}")]
                edges.update(subs)
                if len(subs) < len(node.names):  # names defined in the module itself
                    edges.add(node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.split(".")[0] == "a0verify")
        edges.discard(mod)
        graph[mod] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert graph.get("a0verify.pipeline")
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_long_modules_state_their_reason() -> None:
    """A module over ~400 lines says why at its top ("Long module: ...")."""
    long = []
    for path in PKG.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > MAX_LINES and "Long module:" not in text[:3000]:
            long.append(f"{path.relative_to(PKG.parent)} ({text.count(chr(10))} lines)")
    assert long == []
