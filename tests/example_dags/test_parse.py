"""Every example DAG imports cleanly into a DagBag, on Airflow 3.3 and on 2.11, with no environment set.

Each DagBag runs in a subprocess with its own AIRFLOW_HOME, so Airflow's configuration never touches
the user's home and the Airflow 2 interpreter can be a different one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.airflow.harness import REPO, AirflowHome, airflow2_python

pytestmark = pytest.mark.airflow

EXAMPLE_DAGS = REPO / "example_dags"
EXPECTED = {
    "redivis_daily_load.py": "redivis_daily_load",
    "redivis_upload_from_object_storage.py": "redivis_upload_from_object_storage",
    "redivis_minimal_upload.py": "redivis_minimal_upload",
    "redivis_on_release.py": "redivis_on_release",
}
#: Airflow 2.11 has no event-driven scheduling: the release example defines no DAG there.
EXPECTED_AIRFLOW2 = {k: v for k, v in EXPECTED.items() if k != "redivis_on_release.py"}

# Prints one JSON line: the import errors and, per DAG, its tasks with the settings the docs promise.
DAGBAG_SCRIPT = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])  # AIRFLOW__CORE__LOAD_EXAMPLES=False keeps examples out
dags = {}
for dag_id, dag in bag.dags.items():
    tasks = {}
    for t in dag.tasks:
        partial = getattr(t, "partial_kwargs", None) or {}
        tasks[t.task_id] = {
            "type": getattr(t, "operator_name", None) or getattr(t, "task_type", None) or type(t).__name__,
            "mapped": hasattr(t, "expand_input"),
            "retries": partial.get("retries", getattr(t, "retries", None)),
            "deferrable": partial.get("deferrable", getattr(t, "deferrable", None)),
            "upstream": sorted(t.upstream_task_ids),
        }
    dags[dag_id] = {"fileloc": dag.fileloc, "tasks": tasks}
from importlib.metadata import version
errors = {k: str(v) for k, v in bag.import_errors.items()}
print("DAGBAG=" + json.dumps({"errors": errors, "dags": dags, "upath": version("universal-pathlib")}, default=str))
"""


def load_dagbag(python: str, tmp_path: Path) -> dict:
    home = AirflowHome(tmp_path / "airflow", python=python)
    # No REDIVIS_EXAMPLE_* variables: the defaults alone must give a DAG that parses.
    env = {k: v for k, v in home.env().items() if not k.startswith("REDIVIS_EXAMPLE_")}
    proc = subprocess.run(
        [python, "-c", DAGBAG_SCRIPT, str(EXAMPLE_DAGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DAGBAG=")]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("DAGBAG="))


def assert_example_dags(bag: dict, expected: dict[str, str] = EXPECTED) -> None:
    assert bag["errors"] == {}
    found = {Path(dag["fileloc"]).name: dag_id for dag_id, dag in bag["dags"].items()}
    assert found == expected
    assert {p.name for p in EXAMPLE_DAGS.glob("*.py")} == set(EXPECTED), "a new example DAG needs a test"
    if "redivis_daily_load" not in expected.values():
        return

    daily = bag["dags"]["redivis_daily_load"]["tasks"]
    assert set(daily) == {
        "create_next_version",
        "check_table",
        "list_day_files",
        "upload",
        "wait_for_processing",
        "release_version",
    }
    assert daily["upload"]["mapped"]
    assert daily["wait_for_processing"]["mapped"]
    assert daily["wait_for_processing"]["deferrable"] is True
    assert daily["upload"]["retries"] == 2
    assert "check_table" in daily["upload"]["upstream"]
    assert daily["release_version"]["upstream"] == ["wait_for_processing"]


def test_example_dags_parse_on_airflow3(tmp_path: Path) -> None:
    bag = load_dagbag(sys.executable, tmp_path)
    assert_example_dags(bag)
    assert set(bag["dags"]["redivis_on_release"]["tasks"]) == {"new_release"}


def test_example_dags_parse_on_airflow2(tmp_path: Path) -> None:
    python = airflow2_python()
    if python is None:
        pytest.skip("set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)")
    # dev/setup-venvs pins universal-pathlib<0.3 there: with 0.3, Airflow 2.11's ObjectStoragePath
    # refuses every protocol and the object-storage example would not parse.
    bag = load_dagbag(python, tmp_path)
    assert_example_dags(bag, EXPECTED_AIRFLOW2)
