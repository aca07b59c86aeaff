"""RedivisUploadSensor in real Airflow: ``dag.test()`` on a migrated metadata database, in a subprocess.

The DAG's first task creates the uploads through the API, so the sensors meet them while Redivis (the
emulator) is still processing: ``queued``, then ``running``, then ``completed`` or ``failed``. Runs on
the Airflow of this interpreter (3.3 under ``dev/test``) and on 2.11 through ``REDIVIS_TEST_AIRFLOW2_PYTHON``.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

import pytest
from redivis_emulator import Fault, RedivisEmulator

from tests.airflow.harness import AirflowHome, airflow2_python, redivis_connection
from tests.triggers.emulated_uploads import NO_HOOK_RETRIES, TABLE

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAG_TEMPLATE = '''
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG, task
from airflow_provider_redivis.sensors.upload import RedivisUploadSensor
from tests.triggers.emulated_uploads import create_upload

TABLE = {table!r}
RETRIES_FILE = Path({retries_file!r})


def note_retry(context):
    """A sensor that fails for good must not come here."""
    with RETRIES_FILE.open("a") as out:
        out.write(context["ti"].task_id + "\\n")


def make_upload(name):
    """Creates the upload and passes it on as the upload operator would: a dict with its uri."""

    @task(task_id="make_" + name.split(".")[0])
    def make():
        return {{"uri": create_upload(name)["uri"], "name": name}}

    return make()


with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={{"retries": 2, "retry_delay": timedelta(seconds=1), "on_retry_callback": note_retry}},
) as dag:
{tasks}
'''


@pytest.fixture(params=["this_interpreter", "airflow2"])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AirflowHome]:
    if request.param == "airflow2":
        python = airflow2_python()
        if python is None:
            pytest.skip(
                "set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)"
            )
    else:
        python = sys.executable
    airflow_home = AirflowHome(tmp_path / request.param, python=python)
    yield airflow_home
    airflow_home.cleanup()


def run_dag(
    home: AirflowHome, emu: RedivisEmulator, dag_id: str, tasks: str, tmp_path: Path
) -> tuple[bool, str, list[str]]:
    retries_file = tmp_path / f"{dag_id}.retries"
    dag_file = home.write_dag(
        dag_id,
        DAG_TEMPLATE.format(table=TABLE, retries_file=str(retries_file), dag_id=dag_id, tasks=tasks),
    )
    connections = {
        # One attempt per call: a transient error reaches the sensor itself, which must ride it out.
        "redivis_default": redivis_connection(emu.base_url, emu.token, **NO_HOOK_RETRIES),
        "redivis_setup": redivis_connection(emu.base_url, emu.token),
    }
    result = home.dag_test(dag_file, dag_id, connections=connections, timeout=120)
    retried = retries_file.read_text().split() if retries_file.exists() else []
    return result.succeeded, result.output, retried


def test_sensor_waits_in_every_mode_and_from_every_way_of_naming_the_upload(
    home: AirflowHome, tmp_path: Path
) -> None:
    # dag.test runs one task at a time: each sensor starts right after its upload is created, while
    # Redivis is still processing it (queued, then running, 1 s each).
    tasks = """
    made = {name: make_upload(name + ".csv") for name in ("poke", "resched", "deferred", "xcomarg", "template", "flaky")}
    poke = RedivisUploadSensor(task_id="poke", table=TABLE, upload_name="poke.csv", poke_interval=0.3, timeout=60)
    resched = RedivisUploadSensor(
        task_id="resched", table=TABLE, upload_name="resched.csv", mode="reschedule", poke_interval=1, timeout=60
    )
    deferred = RedivisUploadSensor(
        task_id="deferred", table=TABLE, upload_name="deferred.csv", deferrable=True, poke_interval=0.3, timeout=60
    )
    # The upload operator's result as an XComArg, and as a template rendered to text (no native rendering).
    from_xcomarg = RedivisUploadSensor(task_id="from_xcomarg", upload=made["xcomarg"], poke_interval=0.3)
    from_template = RedivisUploadSensor(
        task_id="from_template", upload="{{ ti.xcom_pull('make_template') }}", poke_interval=0.3
    )
    flaky = RedivisUploadSensor(task_id="flaky", table=TABLE, upload_name="flaky.csv", poke_interval=0.3)
    made["poke"] >> poke >> made["resched"] >> resched >> made["deferred"] >> deferred >> made["xcomarg"]
    from_xcomarg >> made["template"] >> from_template >> made["flaky"] >> flaky
"""
    names = ["poke", "resched", "deferred", "xcomarg", "template", "flaky"]
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emu", processing_delay=1.0) as emu:
        emu.add_fault(Fault("status", method="GET", path_contains="flaky_csv", status=503, times=3))
        ok, output, retried = run_dag(home, emu, "sensor_modes", tasks, tmp_path)
        assert ok, output[-8000:]
        assert retried == []
        statuses = {u["name"]: u["status"] for u in emu.list_uploads(TABLE)}
        assert statuses == {f"{name}.csv": "completed" for name in names}
        flaky_gets = [r.status for r in emu.requests if r.method == "GET" and "flaky_csv" in r.path]
        assert flaky_gets.count(503) == 3
    # Each sensor met its upload before Redivis was done with it, and waited in its own way.
    for name in names:
        assert re.search(rf"Upload '{name}.csv'.*status '(queued|running)'", output), name
    assert len(re.findall(r"Upload 'resched.csv'.*status '(?:queued|running)'; waiting", output)) >= 1
    assert "reschedul" in output.lower()
    assert re.search(r"Upload 'deferred.csv'.*next check in", output)  # the trigger's own log line
    assert "Status check of upload 'flaky.csv'" in output
    assert emu.token not in output


def test_failed_upload_fails_the_sensor_once_with_redivis_message(home: AirflowHome, tmp_path: Path) -> None:
    tasks = """
    bad = RedivisUploadSensor(task_id="bad", table=TABLE, upload_name="bad.csv", poke_interval=0.3, timeout=60)
    bad_deferred = RedivisUploadSensor(
        task_id="bad_deferred", upload=make_upload("bad2.csv"), deferrable=True, poke_interval=0.3, timeout=60
    )
    make_upload("bad.csv") >> bad
"""
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emu", processing_delay=0.5) as emu:
        emu.add_fault(Fault("fail_processing", message="Row 7 has 3 columns, expected 2", times=2))
        ok, output, retried = run_dag(home, emu, "sensor_failed", tasks, tmp_path)
    assert not ok
    assert output.count("Row 7 has 3 columns, expected 2") >= 2  # both sensors
    assert retried == []  # AirflowFailException: the retries were not used


def test_timeout_fails_with_what_was_seen_last(home: AirflowHome, tmp_path: Path) -> None:
    tasks = """
    late = RedivisUploadSensor(task_id="late", table=TABLE, upload_name="late.csv", poke_interval=0.5, timeout=2)
    late_deferred = RedivisUploadSensor(
        task_id="late_deferred", table=TABLE, upload_name="late.csv", deferrable=True, poke_interval=0.5, timeout=2
    )
    make_upload("late.csv") >> [late, late_deferred]
"""
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emu", processing_delay=300) as emu:
        ok, output, retried = run_dag(home, emu, "sensor_timeout", tasks, tmp_path)
    assert not ok
    assert output.count("Gave up waiting for Redivis upload 'late.csv'") >= 2
    assert "last seen status 'queued' at 20" in output
    assert retried == []  # a sensor timeout is final
