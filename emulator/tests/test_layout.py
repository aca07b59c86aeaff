"""The emulator's modules import one another one way: no cycle, TYPE_CHECKING imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import redivis_emulator

PACKAGE = Path(redivis_emulator.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (``redivis_emulator.x`` -> ``x``)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "redivis_emulator":
                found |= {alias.name for alias in node.names if alias.name in modules}
            elif node.module.startswith("redivis_emulator."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("redivis_emulator.")}
    return found


def test_no_import_cycle() -> None:
    graph = {p.stem: imports_of(p) for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join([*path, module])}"
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])
    assert "server" not in set().union(*(deps for name, deps in graph.items() if name != "pytest_plugin"))
