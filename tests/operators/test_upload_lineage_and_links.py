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
from tests.operators.test_upload_retries import CHUNK, drop_everything_after, run_dag, write_source

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


def write_labels(folder: Path) -> Path:
    path = folder / "in" / "labels.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id,label\n" + "".join(f"{i},row {i}\n" for i in range(250)))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_labels(tmp_path)


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
    source = write_labels(tmp_path)
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


# -- a failed try's log, and its buttons ---------------------------------------------------------------


def _first_try(output: str) -> str:
    """Airflow 3 dag.test()'s log of the task's first try: from its start to its end."""
    start = output.index("[DAG TEST] starting task_id=upload")
    return output[start : output.index("[DAG TEST] end task", start)]


def test_a_failed_try_logs_its_failure_and_no_missing_xcom_airflow3(tmp_path: Path) -> None:
    """Try 1 loses the network halfway and fails; Airflow 3 then asks for the buttons' URLs. None is known
    yet: the log must show the real failure and nothing that looks like a second one (it showed two
    "[error] XCom not found" lines). Try 2 resumes and its buttons are Redivis's URLs."""
    source = write_source(tmp_path / "sales.csv", 10 * CHUNK)
    home = AirflowHome(tmp_path / "airflow")
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=0.05) as emu:
        emu.add_fault(drop_everything_after(0.5, 10 * CHUNK))
        result = run_dag(home, emu, operator_kwargs=f"source={str(source)!r}, upload_type='stream'")
        assert result.succeeded, result.output[-6000:]
        expected = {
            "_link_RedivisTableLink": emu.get_table(TABLE)["url"],
            "_link_RedivisUploadLink": emu.list_uploads(TABLE)[0]["url"],
        }
    failed = _first_try(result.output)
    assert "Gave up sending the source after repeated failures" in failed
    assert "XCom not found" not in result.output
    errors = [line for line in failed.splitlines() if "[error" in line]
    assert ["Task failed with exception" in line for line in errors] == [True], errors
    stored = {key: json.loads(v) for key, v in home.query("SELECT key, value FROM xcom") if key in expected}
    assert stored == expected


WAIT_FAILS_DAG = """
from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

with DAG(dag_id="wait_fails", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    RedivisResumableUploadOperator(
        task_id="upload", source={source!r}, table={table!r}, poll_interval=0.1, wait_timeout=0.5
    )
"""


def test_a_try_that_fails_while_waiting_keeps_its_buttons_airflow3(tmp_path: Path, source: Path) -> None:
    """The upload exists before the wait: its URLs are published then, so a try whose wait ends in failure
    (processing outlasts wait_timeout) still has both buttons, and its log no missing XCom."""
    home = AirflowHome(tmp_path / "airflow")
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=30) as emu:
        dag_file = home.write_dag("wait_fails", WAIT_FAILS_DAG.format(source=str(source), table=TABLE))
        connections = {"redivis_default": redivis_connection(emu.base_url, emu.token)}
        result = home.dag_test(dag_file, "wait_fails", connections=connections)
        assert not result.succeeded
        assert "Gave up waiting for Redivis upload" in result.output
        expected = {
            "_link_RedivisTableLink": emu.get_table(TABLE)["url"],
            "_link_RedivisUploadLink": emu.list_uploads(TABLE)[0]["url"],
        }
    assert "XCom not found" not in result.output
    stored = {key: json.loads(v) for key, v in home.query("SELECT key, value FROM xcom") if key in expected}
    assert stored == expected


FAILED_LINKS_ON_AIRFLOW2 = """
import logging
import sys

from airflow.models import DagBag, TaskInstance
from airflow.models.serialized_dag import SerializedDagModel
from airflow.utils.session import create_session

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
SerializedDagModel.write_dag(DagBag(sys.argv[1], include_examples=False).get_dag("upload_dag"))
dag = DagBag(read_dags_from_db=True).get_dag("upload_dag")  # what the web server reads
task = dag.get_task("upload")
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id="upload_dag", task_id="upload").one()
    print(f"STATE={ti.state}")
    for name in task.extra_links:
        print(f"{name}={task.get_extra_links(ti, name)!r}")
"""


def test_the_airflow2_web_servers_links_of_a_failed_try_log_no_error(tmp_path: Path) -> None:
    """Airflow 2 asks in the web server, with the serialized operator, reading the XCom: for a try that
    failed before Redivis named a URL, no link and no error line."""
    python = airflow2_python()
    if python is None:
        pytest.skip("set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)")
    source = write_source(tmp_path / "sales.csv", 10 * CHUNK)
    home = AirflowHome(tmp_path / "airflow2", python=python)
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator") as emu:
        emu.add_fault(drop_everything_after(0.5, 10 * CHUNK))
        # The network stays cut for both tries: the task instance ends failed, before Redivis named a URL.
        result = run_dag(
            home,
            emu,
            operator_kwargs=f"source={str(source)!r}, upload_type='stream'",
            between_tries="    pass",
        )
        assert not result.succeeded
        assert "Gave up sending the source after repeated failures" in result.output
    asked = subprocess.run(
        [python, "-c", textwrap.dedent(FAILED_LINKS_ON_AIRFLOW2), str(home.dags)],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert asked.returncode == 0, asked.stderr[-3000:]
    assert set(asked.stdout.splitlines()) >= {"STATE=failed", "Redivis table=''", "Redivis upload=''"}, (
        asked.stdout
    )
    assert "ERROR" not in asked.stderr, asked.stderr[-3000:]
    assert "XCom not found" not in asked.stderr
