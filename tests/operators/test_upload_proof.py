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


RETRY_DAG = """
from __future__ import annotations

import json
import os
import sqlite3
import urllib.request
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator
from airflow_provider_redivis.engine.sealing import SessionUrlSeal

API, ADMIN, TOKEN, TABLE, SIZE = {api!r}, {admin!r}, {token!r}, {table!r}, {size!r}
ADMIN_TOKEN = {admin_token!r}


def _call(method, url, data=None, headers=None):
    request = urllib.request.Request(url, method=method, data=data, headers=headers or {{}})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the test's emulator
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def swap_in_a_longer_session(context):
    \"\"\"Between the tries: the checkpoint's session is replaced by one that holds more than the source.\"\"\"
    status, body = _call(
        "DELETE",
        ADMIN + "/_emulator/faults",
        headers={{"Content-Type": "application/json", "X-Emulator-Admin-Token": ADMIN_TOKEN}},
    )
    assert status == 200, (status, body)
    status, body = _call(
        "POST", f"{{API}}/tables/{{TABLE}}/resumableUpload?size={{2 * SIZE}}", b"",
        {{"Authorization": f"Bearer {{TOKEN}}"}},
    )
    url = json.loads(body)["url"]
    held = (SIZE // 262144 + 1) * 262144  # more than the source, in whole 256 KiB units
    status, _ = _call("PUT", url, os.urandom(held), {{"Content-Range": f"bytes 0-{{held - 1}}/{{2 * SIZE}}"}})
    assert status == 308, status
    path = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        (value,) = db.execute("SELECT value FROM task_state_store").fetchone()
        checkpoint = json.loads(value)
        checkpoint.pop("session_url", None)
        checkpoint["session_url_sealed"] = SessionUrlSeal(TOKEN).seal(url)
        db.execute("UPDATE task_state_store SET value = ?", (json.dumps(checkpoint),))


with DAG(dag_id="longer_session", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    RedivisResumableUploadOperator(
        task_id="upload", source={source!r}, table=TABLE, upload_type="stream",
        chunk_size=1048576, retries=1, retry_delay=timedelta(seconds=1),
        on_retry_callback=swap_in_a_longer_session,
    )
"""


def test_a_session_that_is_not_this_sources_is_replaced_by_a_new_one(tmp_path: Path) -> None:
    """A checkpoint whose session holds more than the source (its status query refuses the source's
    total, as Cloud Storage does): the retry starts a new session instead of failing the same way again."""
    size = 6 * 1024 * 1024 + 99
    source = tmp_path / "longer.csv"
    source.write_bytes(os.urandom(size))
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator") as emu:
        emu.add_fault(Fault("reset", origin="session", at_offset=size // 2, times=None))
        home = AirflowHome(tmp_path / "airflow")
        dag_file = home.write_dag(
            "longer_session",
            RETRY_DAG.format(
                api=emu.api_url,
                admin_token=emu.admin_token,
                admin=emu.base_url,
                token=emu.token,
                table=TABLE,
                size=size,
                source=str(source),
            ),
        )
        connection = redivis_connection(emu.base_url, emu.token, max_attempts=2, max_retry_seconds=5)
        result = home.dag_test(dag_file, "longer_session", connections={"redivis_default": connection})
        assert result.succeeded, result.output[-6000:]
        assert "Starting a new upload session from byte 0" in result.output
        assert "it is not this source's session" in result.output
        uploads = emu.list_uploads(TABLE)
        assert len(uploads) == 1
        assert emu.upload_bytes_path(TABLE, "longer.csv").read_bytes() == source.read_bytes()
