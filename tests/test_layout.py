"""The provider's layers: imports run one way (down), with no cycle, and the ground floor needs no Airflow.

README "Development" draws the same picture. Imports inside ``if TYPE_CHECKING:`` are annotations only
and are left out. Imports inside functions count for the floors (they run); a cycle is one of imports
made while modules load, at their top level.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "airflow_provider_redivis"
ROOT = "airflow_provider_redivis"

#: Lower floors never import higher ones. Plain Python (no Airflow) is floor 0.
FLOORS: dict[str, int] = {
    "hooks": 1,
    "checkpoint_store": 1,
    "assets": 1,
    "links": 1,
    "lineage": 1,
    "triggers": 2,
    "operators": 3,
    "sensors": 3,
    "transfers": 4,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    first = module.removeprefix(f"{ROOT}.").split(".")[0]
    return 0 if module == ROOT else FLOORS.get(first, 0)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The provider modules this file imports when it runs (or, with ``top_level_only``, when it loads)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.startswith(ROOT):
                    found.add(child.module)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names if alias.name.startswith(ROOT))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {
    name: {m for m in runtime_imports(path) if m in MODULES and m != name} for name, path in MODULES.items()
}
LOAD_GRAPH = {
    name: {m for m in runtime_imports(path, top_level_only=True) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


def test_the_layout_is_what_the_test_knows() -> None:
    assert len(MODULES) > 30
    assert f"{ROOT}.hooks.redivis" in MODULES
    assert GRAPH[f"{ROOT}.sensors.upload"] >= {f"{ROOT}.triggers.upload", f"{ROOT}.upload_status"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_or_level(module: str) -> None:
    upward = sorted(m for m in GRAPH[module] if floor_of(m) > floor_of(module))
    assert not upward, f"{module} (floor {floor_of(module)}) imports higher floors: {upward}"


def test_there_is_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(LOAD_GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(LOAD_GRAPH):
        if module not in state:
            walk(module, [module])


def test_the_sensor_takes_only_the_trigger_class_from_the_trigger_module() -> None:
    tree = ast.parse((PACKAGE / "sensors" / "upload.py").read_text())
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == f"{ROOT}.triggers.upload"
        for alias in node.names
    ]
    assert names == ["RedivisUploadTrigger"]


BLOCK_AIRFLOW = """
import importlib, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError("airflow is out of reach: " + name)

sys.meta_path.insert(0, Block())
for name in sys.argv[1:]:
    importlib.import_module(name)
print("ok")
"""


def test_the_ground_floor_imports_with_airflow_out_of_reach() -> None:
    ground = sorted(m for m in MODULES if floor_of(m) == 0)
    assert f"{ROOT}.upload_job" in ground
    assert f"{ROOT}.resumable" in ground
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_AIRFLOW, *ground],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
