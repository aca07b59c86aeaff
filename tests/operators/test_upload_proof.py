"""Through a real task run: a server that reports a hash of other bytes ends with no upload created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redivis_emulator import Fault, RedivisEmulator

from tests.airflow.harness import AirflowHome, redivis_connection

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

TABLE = "test_owner.test_dataset.test_table"

DAG = """
from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator

with DAG(dag_id="lying_server", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    RedivisResumableUploadOperator(
        task_id="upload", source={source!r}, table={table!r}, upload_type="stream", retries=0
    )
"""


@pytest.mark.parametrize("dialect", ["json", "xml"])
def test_a_lying_server_ends_with_no_upload_created(tmp_path: Path, dialect: str) -> None:
    source = tmp_path / "data.csv"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", session_dialect=dialect) as emu:
        emu.add_fault(Fault("lie", origin="session", lie_about="crc32c"))
        home = AirflowHome(tmp_path / "airflow")
        dag_file = home.write_dag("lying_server", DAG.format(source=str(source), table=TABLE))
        result = home.dag_test(
            dag_file,
            "lying_server",
            connections={"redivis_default": redivis_connection(emu.base_url, emu.token)},
        )
        assert not result.succeeded
        assert any("lie" in r.faults for r in emu.requests), "the lying answer was never sent"
        assert "The server's crc32c" in result.output
        assert emu.list_uploads(TABLE) == []
        assert not any(r.method == "POST" and r.path.endswith("/uploads") for r in emu.requests)
        # The checkpoint of that session is gone: the next try would start a new one.
        assert home.query("SELECT * FROM task_state_store") == []
