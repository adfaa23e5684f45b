"""Layering: the relay uses the library, never the reverse, and the CLI's imports (lazy ones too) form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, everywhere: bool) -> set[str]:
    """Modules ``path`` imports: at module level only, or anywhere (``everywhere``)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _sources(*packages: str) -> dict[str, Path]:
    return {_module_name(p): p for package in packages for p in (REPO / package).rglob("*.py")}


def test_the_library_never_imports_the_relay():
    offenders = {
        name: sorted(i for i in _imports(path, everywhere=True) if i == "relay" or i.startswith("relay."))
        for name, path in _sources("hubblepy").items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_cli_and_relay_have_no_import_cycle():
    modules = _sources("hubblepy", "relay")
    graph = {
        name: {i for i in _imports(path, everywhere=True) if i in modules and i != name}
        for name, path in modules.items()
        if name.startswith(("hubblepy.cli", "relay", "hubblepy.printer", "hubblepy.ui", "hubblepy.rpcerror"))
    }
    # A package's __init__ importing its own submodules (and they its siblings) is not a layering cycle.
    for name, edges in graph.items():
        graph[name] = {e for e in edges if not (name.startswith(e + ".") or e.startswith(name + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(nxt) :], nxt]))
            if nxt in graph and nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_relay_durations_module_and_no_live_module():
    assert not (REPO / "relay" / "durations.py").exists()
    assert not (REPO / "hubblepy" / "cli" / "live.py").exists()
