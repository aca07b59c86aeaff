"""The provider's layers: imports run one way (down), with no cycle, and the ground floor needs no Airflow.

The folders are the floors: ``engine/`` is plain Python (floor 0), Airflow's glue, triggers, operators and
sensors, and transfers stand on it; docs/internals.md draws the same picture. Imports inside ``if TYPE_CHECKING:`` are annotations only
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

#: Lower floors never import higher ones. Plain Python (no Airflow) is floor 0: the engine, and the few
#: modules at the package root that every floor shares (:data:`VOCABULARY`).
FLOORS: dict[str, int] = {
    "engine": 0,
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


#: The plain-Python modules that stay at the package root: the exceptions and table references every floor
#: speaks (users import them too), and the provider's metadata for Airflow's entry point.
VOCABULARY = {"errors", "references", "provider_info"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    first = module.removeprefix(f"{ROOT}.").split(".")[0]
    if module == ROOT or first in VOCABULARY:
        return 0
    return FLOORS[first]


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
    assert GRAPH[f"{ROOT}.sensors.upload"] >= {f"{ROOT}.triggers.upload", f"{ROOT}.engine.status"}


def test_every_module_stands_on_a_known_floor() -> None:
    """A new module at the package root is put on a floor here (or into a folder), not left to default."""
    unknown = sorted(
        m
        for m in MODULES
        if m != ROOT and m.removeprefix(f"{ROOT}.").split(".")[0] not in {*FLOORS, *VOCABULARY}
    )
    assert not unknown, f"modules on no floor: {unknown}"


def test_no_plain_python_module_is_left_at_the_package_root() -> None:
    """The upload engine lives in ``engine/``: the flat layout of plain-Python modules does not come back."""
    at_root = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    plain = sorted(name for name in at_root if floor_of(f"{ROOT}.{name}") == 0)
    assert plain == sorted(VOCABULARY), f"plain-Python modules at the package root: {plain}"


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


def airflow_imports(path: Path) -> list[str]:
    """Every ``airflow`` import in the file, wherever it is (``TYPE_CHECKING`` blocks and functions too)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [
            f"{path.name}:{node.lineno} {n}" for n in names if n == "airflow" or n.startswith("airflow.")
        ]
    return found


ENGINE = sorted(m for m in MODULES if m == f"{ROOT}.engine" or m.startswith(f"{ROOT}.engine."))


def test_the_engine_is_floor_0_and_names_no_airflow_anywhere() -> None:
    assert {f"{ROOT}.engine.job", f"{ROOT}.engine.resumable", f"{ROOT}.engine.protocol"} <= set(ENGINE)
    assert all(floor_of(m) == 0 for m in ENGINE)
    found = [hit for m in ENGINE for hit in airflow_imports(MODULES[m])]
    assert not found, f"the engine imports Airflow: {found}"


def test_the_ground_floor_imports_with_airflow_out_of_reach() -> None:
    ground = sorted(m for m in MODULES if floor_of(m) == 0)
    assert set(ENGINE) <= set(ground)
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
