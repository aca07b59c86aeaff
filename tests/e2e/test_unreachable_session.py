"""A session origin that refuses a connection, or never answers one, under a real Airflow 3.3 scheduler.

The task log file names the failure and says what happens next; it never holds the session URL (a
credential of its own), nor urllib3's "Max retries exceeded with url: …" text that carries it, nor the
token. Two emulators hand out session URLs on two dead origins: a closed port, and a listener whose
backlog is full, so the kernel drops the next SYN and the connect times out.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from redivis_emulator import RedivisEmulator

from tests.e2e.deployment import AirflowDeployment, log_messages

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

TABLE = "test_owner.test_dataset.test_table"
DAG_ID = "unreachable_session"

DAG = """
from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    for conn_id in ("redivis_refused", "redivis_silent"):
        RedivisResumableUploadOperator(
            task_id=conn_id, source={source!r}, table={table!r}, redivis_conn_id=conn_id, retries=0
        )
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def _connection(emu: RedivisEmulator) -> str:
    extra = {"max_attempts": 2, "max_retry_seconds": 5, "connect_timeout": 1, "read_timeout": 2}
    return json.dumps({"conn_type": "redivis", "host": emu.base_url, "password": emu.token, "extra": extra})


def test_unreachable_session_origins_are_named_without_their_urls(tmp_path: Path, silent_port: int) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(os.urandom(300_000))
    with (
        RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "refused") as refused,
        RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "silent") as silent,
    ):
        refused.catalog.session_base_url = f"http://127.0.0.1:{_closed_port()}"
        silent.catalog.session_base_url = f"http://127.0.0.1:{silent_port}"
        env = {
            "AIRFLOW_CONN_REDIVIS_REFUSED": _connection(refused),
            "AIRFLOW_CONN_REDIVIS_SILENT": _connection(silent),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        }
        airflow = AirflowDeployment(
            tmp_path / "airflow", env=env, services=("api-server", "scheduler", "dag-processor")
        )
        (airflow.dags / f"{DAG_ID}.py").write_text(DAG.format(dag_id=DAG_ID, source=str(source), table=TABLE))
        try:
            airflow.start()
            airflow.wait_for_dag(DAG_ID)
            run_id = airflow.trigger(DAG_ID, logical_date=datetime.now(timezone.utc))
            assert airflow.wait_for_run(DAG_ID, run_id, timeout=180) == "failed"
            logs = {
                task: airflow.task_log(DAG_ID, run_id, task, 1)
                for task in ("redivis_refused", "redivis_silent")
            }
        finally:
            airflow.stop()
        urls = {
            "redivis_refused": next(iter(refused.sessions.values())).url,
            "redivis_silent": next(iter(silent.sessions.values())).url,
        }
        tokens = (refused.token, silent.token)
    expected = {"redivis_refused": "ConnectionError", "redivis_silent": "ConnectTimeout"}
    for task, text in logs.items():
        assert "Task failed with exception" in log_messages(text)
        # The exception as Airflow logs it (its type, message and traceback frames) names the failure.
        assert f"Gave up sending the source after repeated failures ({expected[task]})" in text, text
        secret = urls[task].split("/upload/resumable/", 1)[1]
        assert secret not in text
        assert "Max retries exceeded" not in text  # urllib3's text, which carries the request line
        assert all(token not in text for token in tokens)
