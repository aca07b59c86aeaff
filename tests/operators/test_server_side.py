"""RedivisServerSideUploadOperator in a real DAG run (``dag.test()``) against the emulator: Redivis fetches a gs://
object, then copies that table into another; the buttons' URLs and OpenLineage's inputs; a missing object
fails the task at once with Redivis's reason."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from redivis_emulator import RedivisEmulator

from tests.airflow.harness import AirflowHome, redivis_connection

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

TABLE = "test_owner.test_dataset.test_table"
COPY = "test_owner.test_dataset.copy_table"

DAG = """
from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.operators.server_side import RedivisServerSideUploadOperator

with DAG(dag_id="fetched", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    fetch = RedivisServerSideUploadOperator(
        task_id="fetch", source={source!r}, identity="me@example.com", table={table!r}, poll_interval=0.2,
        retries=2,
    )
    copy = RedivisServerSideUploadOperator(
        task_id="copy", source_table={table!r}, table={copy!r}, poll_interval=0.2,
    )
    fetch >> copy
"""


def run(tmp_path: Path, source: str, **env: str) -> tuple[AirflowHome, RedivisEmulator, str, bool]:
    gcs = tmp_path / "gcs" / "bucket" / "exports"
    gcs.mkdir(parents=True)
    (gcs / "sales.csv").write_text("id,label\n" + "".join(f"{i},row {i}\n" for i in range(40)))
    home = AirflowHome(tmp_path / "airflow")
    with RedivisEmulator(
        tables=[TABLE, COPY],
        data_dir=tmp_path / "emulator",
        processing_delay=0.02,
        gcs_root=tmp_path / "gcs",
        gcs_identities={"me@example.com": ["bucket"]},
    ) as emu:
        dag_file = home.write_dag("fetched", DAG.format(source=source, table=TABLE, copy=COPY))
        connections = {"redivis_default": redivis_connection(emu.base_url, emu.token)}
        result = home.dag_test(dag_file, "fetched", connections=connections, **env)
        return home, emu, result.output, result.succeeded


def test_redivis_fetches_copies_and_the_run_shows_links_and_lineage(tmp_path: Path) -> None:
    events_file = tmp_path / "openlineage.jsonl"
    transport = json.dumps({"type": "file", "log_file_path": str(events_file), "append": True})
    home, emu, output, succeeded = run(
        tmp_path,
        "gs://bucket/exports/sales.csv",
        AIRFLOW__OPENLINEAGE__TRANSPORT=transport,
        AIRFLOW__OPENLINEAGE__NAMESPACE="tests",
    )
    assert succeeded, output[-6000:]
    (fetched,) = emu.list_uploads(TABLE)
    (copied,) = emu.list_uploads(COPY)
    assert (fetched["name"], fetched["numRows"]) == ("sales.csv", 40)
    assert (copied["name"], copied["numRows"]) == ("test_table", 40)
    assert emu.bytes_received("session") == 0
    links = {
        (task, key): json.loads(value)
        for task, key, value in home.query("SELECT task_id, key, value FROM xcom")
        if key.startswith("_link_")
    }
    assert links == {
        ("fetch", "_link_RedivisUploadLink"): fetched["url"],
        ("fetch", "_link_RedivisTableLink"): emu.get_table(TABLE)["url"],
        ("copy", "_link_RedivisUploadLink"): copied["url"],
        ("copy", "_link_RedivisTableLink"): emu.get_table(COPY)["url"],
    }
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = {e["job"]["name"].rsplit(".", 1)[-1]: e for e in events if e["eventType"] == "COMPLETE"}
    assert [(d["namespace"], d["name"]) for d in complete["fetch"]["inputs"]] == [
        ("gs://bucket", "exports/sales.csv")
    ]
    assert [(d["namespace"], d["name"]) for d in complete["copy"]["inputs"]] == [
        ("redivis", "test_owner.test_dataset.test_table")
    ]
    assert [(d["namespace"], d["name"]) for d in complete["copy"]["outputs"]] == [
        ("redivis", "test_owner.test_dataset.copy_table")
    ]


def test_a_missing_object_fails_the_task_at_once_with_redivis_reason(tmp_path: Path) -> None:
    _home, emu, output, succeeded = run(tmp_path, "gs://bucket/exports/missing.csv")
    assert not succeeded
    assert "No such object: gs://bucket/exports/missing.csv" in output
    assert len(emu.list_uploads(TABLE)) == 1  # one upload, failed: retries=2 did not create more
    assert emu.list_uploads(COPY) == []
