"""A worker dies mid-upload under a real Airflow 3.3 scheduler; the retry resumes and the DAG run succeeds.

Airflow runs the way a user runs it: ``airflow api-server``, ``scheduler``, ``dag-processor`` and
``triggerer`` as separate processes (LocalExecutor, SQLite, its own AIRFLOW_HOME), all on 127.0.0.1.
The daily-load example DAG is copied unchanged into the DAGs folder and triggered over the REST API;
it loads one 64 MiB file into the emulator, which runs in this test process.

What dies, and why that: when the emulator holds half of the file, the test SIGKILLs the LocalExecutor
worker process that supervises the upload (it heartbeats for the task and would report its end) and
the task runner it forked (its own process group), as when the machine or container of a worker dies.
Nobody tells Airflow: the scheduler notices the missing heartbeat and schedules the retry. The second
try finds the checkpoint in the task state store (the metadata database, through the API server),
asks the emulator where the session stands, and sends only the rest. The sensor then waits for
processing deferred, in the triggerer, and the version is released.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from redivis_emulator import Fault, RedivisEmulator

from tests.e2e.daily_load import (
    DAG_ID,
    PROCESSING_STEP_SECONDS,
    SENSOR_TASK,
    SOURCE_NAME,
    STALL_SECONDS,
    TABLE,
    UPLOAD_TASK,
    assert_resumed,
    example_env,
    install_dag,
    resume_evidence,
    wait_for_first_upload_try,
    wait_until_half_held,
    write_csv,
)
from tests.e2e.deployment import AirflowDeployment, TaskProcesses, find_task_processes, log_messages, wait_for

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

#: Bound on the whole DAG run after the trigger, kill and retry included.
RUN_TIMEOUT = 240.0


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RedivisEmulator]:
    with RedivisEmulator(
        tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=PROCESSING_STEP_SECONDS
    ) as emu:
        yield emu


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    return folder


@pytest.fixture
def airflow(tmp_path: Path, emulator: RedivisEmulator, files_dir: Path) -> Iterator[AirflowDeployment]:
    deployment = AirflowDeployment(tmp_path / "airflow", env=example_env(emulator, files_dir))
    install_dag(deployment.dags)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def kill_worker(processes: TaskProcesses) -> None:
    """The worker dies: its supervisor and the task runner's process group, SIGKILL, no goodbye."""
    if processes.supervisor is not None:
        processes.supervisor.kill()
    os.killpg(processes.runner.pid, signal.SIGKILL)


def test_worker_killed_mid_upload_resumes_on_retry(
    emulator: RedivisEmulator, airflow: AirflowDeployment, files_dir: Path
) -> None:
    source = write_csv(files_dir / SOURCE_NAME)
    emulator.add_fault(Fault("stall", origin="session", method="PUT", seconds=STALL_SECONDS, times=None))

    airflow.wait_for_dag(DAG_ID)
    run_id = airflow.trigger(DAG_ID, logical_date=datetime.now(timezone.utc))

    ti = wait_for_first_upload_try(airflow, run_id)
    # Airflow is reachable from this machine only.
    listening = airflow.listening_addresses()
    assert ("127.0.0.1", airflow.port) in listening, listening
    assert {address for address, _ in listening} == {"127.0.0.1"}, listening
    processes = wait_for(
        "the upload's task runner process",
        lambda: find_task_processes(str(ti["id"])),
        timeout=30,
        on_timeout=airflow.diagnostics(),
    )
    held_at_kill = wait_until_half_held(emulator)
    kill_worker(processes)

    state = airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    assert state == "success", airflow.diagnostics()

    # The scheduler retried the upload: try 1 failed (its heartbeat stopped), try 2 succeeded.
    tries = airflow.task_tries(DAG_ID, run_id, UPLOAD_TASK, map_index=0)
    assert [t["state"] for t in tries] == ["failed", "success"], tries
    first_log = airflow.task_log(DAG_ID, run_id, UPLOAD_TASK, 1, map_index=0)
    assert not any(m.startswith("All ") for m in log_messages(first_log)), (
        "try 1 was meant to die mid-transfer"
    )

    second_log = airflow.task_log(DAG_ID, run_id, UPLOAD_TASK, 2, map_index=0)
    evidence = resume_evidence(emulator, second_log, source)
    assert_resumed(evidence, emulator, held_at_kill)

    # The sensor waited in the triggerer, not in a worker slot.
    sensor_tries = airflow.task_tries(DAG_ID, run_id, SENSOR_TASK, map_index=0)
    assert [t["state"] for t in sensor_tries] == ["success"], sensor_tries
    sensor_log = log_messages(airflow.task_log(DAG_ID, run_id, SENSOR_TASK, 1, map_index=0))
    assert "Pausing task as DEFERRED." in [m.strip() for m in sensor_log], sensor_log
    trigger_log = log_messages(airflow.trigger_log(DAG_ID, run_id, SENSOR_TASK, 1, map_index=0))
    assert "Trigger fired event" in trigger_log, trigger_log
