"""What a data engineer sees beside the load: OpenLineage events and the task's Redivis buttons.

Real DAG runs (``dag.test()``) against the emulator. Lineage: the OpenLineage provider, installed for the
tests, emits through its file transport; the test reads the events it wrote. Links: Airflow 3 stores each
link's URL when the try ends (what its API server serves); Airflow 2's web server asks the link class,
which reads the XCom, and the test asks it the same way.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redivis_emulator import RedivisEmulator

from tests.airflow.harness import AirflowHome, DagRunResult, airflow2_python, redivis_connection

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

TABLE = "test_owner.test_dataset.test_table"
SCHEMA = [{"name": "id", "type": "integer"}, {"name": "label", "type": "string"}]

DAG = """
from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

with DAG(dag_id="seen", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    RedivisResumableUploadOperator(
        task_id="upload", source={source!r}, table={table!r}, has_header_row=True, schema={schema!r},
        poll_interval=0.2,
    )
"""


def _run(home: AirflowHome, emu: RedivisEmulator, source: Path, **env: str):
    dag_file = home.write_dag("seen", DAG.format(source=str(source), table=TABLE, schema=SCHEMA))
    connections = {"redivis_default": redivis_connection(emu.base_url, emu.token)}
    return home.dag_test(dag_file, "seen", connections=connections, **env)


def write_source(folder: Path) -> Path:
    path = folder / "in" / "labels.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id,label\n" + "".join(f"{i},row {i}\n" for i in range(250)))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_source(tmp_path)


@dataclass
class Airflow3Run:
    """One upload on Airflow 3 under OpenLineage's listener, and what it left: the scenario of both tests
    below (lineage and links), run once for the two."""

    source: Path
    home: AirflowHome
    result: DagRunResult
    events_file: Path
    upload: dict[str, Any]
    table_url: str


@pytest.fixture(scope="module")
def airflow3_run(tmp_path_factory: pytest.TempPathFactory) -> Airflow3Run:
    tmp_path = tmp_path_factory.mktemp("airflow3_run")
    source = write_source(tmp_path)
    events_file = tmp_path / "openlineage.jsonl"
    transport = json.dumps({"type": "file", "log_file_path": str(events_file), "append": True})
    home = AirflowHome(tmp_path / "airflow")
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=0.02) as emu:
        result = _run(
            home,
            emu,
            source,
            AIRFLOW__OPENLINEAGE__TRANSPORT=transport,
            AIRFLOW__OPENLINEAGE__NAMESPACE="tests",
        )
        uploads = emu.list_uploads(TABLE)
        table_url = emu.get_table(TABLE)["url"]
    return Airflow3Run(source, home, result, events_file, uploads[0] if uploads else {}, table_url)


def test_openlineage_events_name_the_file_and_the_table_with_rows_and_schema(
    airflow3_run: Airflow3Run,
) -> None:
    result, events_file, upload, source = (
        airflow3_run.result,
        airflow3_run.events_file,
        airflow3_run.upload,
        airflow3_run.source,
    )
    assert result.succeeded, result.output[-6000:]
    assert events_file.exists(), "the OpenLineage transport wrote nothing"
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".upload")]
    assert complete, [(e["eventType"], e["job"]["name"]) for e in events]
    event = complete[-1]
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [("file", str(source))]
    (output,) = event["outputs"]
    assert (output["namespace"], output["name"]) == ("redivis", "test_owner.test_dataset.test_table")
    statistics = output["outputFacets"]["outputStatistics"]
    assert statistics["rowCount"] == upload["numRows"] == 250
    assert statistics["size"] == upload["size"] == source.stat().st_size
    assert [(f["name"], f["type"]) for f in output["facets"]["schema"]["fields"]] == [
        ("id", "integer"),
        ("label", "string"),
    ]


def test_links_on_airflow3_are_the_urls_redivis_returned(airflow3_run: Airflow3Run) -> None:
    result = airflow3_run.result
    assert result.succeeded, result.output[-6000:]
    expected = {
        "_link_RedivisTableLink": airflow3_run.table_url,
        "_link_RedivisUploadLink": airflow3_run.upload["url"],
    }
    stored = {
        key: json.loads(value)
        for key, value in airflow3_run.home.query("SELECT key, value FROM xcom")
        if key in expected
    }
    assert stored == expected


LINKS_ON_AIRFLOW2 = """
import sys
from airflow.models import DagBag, DagRun
from airflow.models.taskinstancekey import TaskInstanceKey

dag = DagBag(sys.argv[1], include_examples=False).get_dag("seen")
task = dag.get_task("upload")
run = DagRun.find(dag_id="seen")[0]
key = TaskInstanceKey("seen", "upload", run.run_id, 1, -1)
for link in task.operator_extra_links:
    print(f"{link.name}={link.get_link(task, ti_key=key)}")
"""


def test_links_on_airflow2_are_the_urls_redivis_returned(tmp_path: Path, source: Path) -> None:
    python = airflow2_python()
    if python is None:
        pytest.skip("set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)")
    home = AirflowHome(tmp_path / "airflow2", python=python)
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=0.02) as emu:
        result = _run(home, emu, source)
        assert result.succeeded, result.output[-6000:]
        expected = {
            f"Redivis table={emu.get_table(TABLE)['url']}",
            f"Redivis upload={emu.list_uploads(TABLE)[0]['url']}",
        }
    asked = subprocess.run(
        [python, "-c", textwrap.dedent(LINKS_ON_AIRFLOW2), str(home.dags)],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert asked.returncode == 0, asked.stderr[-3000:]
    assert set(asked.stdout.splitlines()) >= expected, asked.stdout
