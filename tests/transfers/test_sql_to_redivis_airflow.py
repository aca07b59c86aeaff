"""SqlToRedivisOperator in real Airflow (``dag.test()``, real retries, the real checkpoint store).

One DAG run holds three tasks, one after the other:

- ``streamed``: the rows go straight into a session of unknown size; the network is cut once in the
  middle of a request and the engine resumes within the try (seeking back in the stream reader); the
  wait for Redivis's processing is deferred to the triggerer;
- ``stage_killed``: try 1 dies while the rows are being written (its cursor raises), try 2 writes
  them again and uploads them;
- ``upload_killed``: try 1 writes the file, then loses the network for good mid-upload; try 2 finds
  the complete staged file, does not run the query again (a sequence counts the runs), resumes the
  session from its checkpoint, and waits deferred.

A second DAG run holds two streamed tasks whose try 1 fails after the stream: ``create_lost`` loses
every answer to creating its upload, ``wait_lost`` fails its wait for processing; each try 2 attaches
to the upload its try 1 made, without running the query again.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from redivis_emulator import Fault, RedivisEmulator

from tests.airflow.harness import AirflowHome, airflow2_python, redivis_connection
from tests.transfers.postgres_cluster import PostgresCluster

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

TABLE = "test_owner.test_dataset.test_table"
CONN_EXTRA = {"max_attempts": 3, "max_retry_seconds": 10, "read_timeout": 3, "connect_timeout": 2}

DAG = '''
from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.transfers.sql_to_redivis import SqlToRedivisOperator

ADMIN = {admin!r}
ADMIN_TOKEN = {admin_token!r}
FLAG = Path({flag!r})


def clear_faults(context):
    request = urllib.request.Request(
        ADMIN + "/_emulator/faults", method="DELETE", headers={{"X-Emulator-Admin-Token": ADMIN_TOKEN}}
    )
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - the test's emulator on 127.0.0.1


class FailingCursor:
    def __init__(self, cursor, after):
        self._cursor, self._left = cursor, after

    def fetchmany(self, size):
        if self._left == 0:
            raise ConnectionResetError("the worker died while writing the rows")
        self._left -= 1
        return self._cursor.fetchmany(size)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class DiesWhileStaging(SqlToRedivisOperator):
    """Try 1's cursor fails after 5 batches: a worker that dies halfway through the query."""

    def open_cursor(self, conn):
        cursor = super().open_cursor(conn)
        if FLAG.exists():
            return cursor
        FLAG.write_text("try 1 died here")
        return FailingCursor(cursor, 5)


COMMON = dict(
    conn_id="db_test",
    table={table!r},
    staging_path={staging!r} + "/{{{{ ti.task_id }}}}.csv",
    poll_interval=0.2,
    retries=1,
    retry_delay=timedelta(seconds=1),
    chunk_size=256 * 1024,
)

with DAG(dag_id="sql_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    streamed = SqlToRedivisOperator(
        task_id="streamed", sql={small_sql!r}, mode="streamed", deferrable=True, **COMMON
    )
    stage_killed = DiesWhileStaging(
        task_id="stage_killed", sql={small_sql!r}, postgres_copy=False, fetch_size=1000, **COMMON
    )
    upload_killed = SqlToRedivisOperator(
        task_id="upload_killed", sql={big_sql!r}, deferrable=True, on_retry_callback=clear_faults, **COMMON
    )
    streamed >> stage_killed >> upload_killed
'''

SMALL_ROWS = 60000
BIG_ROWS = 150000


def small_expected() -> bytes:
    return ("id,label\n" + "".join(f"{g},row {g}\n" for g in range(1, SMALL_ROWS + 1))).encode()


def big_expected() -> bytes:
    lines = (f"{g},{hashlib.md5(str(g).encode()).hexdigest()}\n" for g in range(1, BIG_ROWS + 1))
    return ("id,label\n" + "".join(lines)).encode()


def run(home: AirflowHome, emu: RedivisEmulator, tmp_path: Path, db_conn: dict, small_sql: str, big_sql: str):
    staging = tmp_path / "staging"
    dag_file = home.write_dag(
        "sql_dag",
        DAG.format(
            admin=emu.base_url,
            admin_token=emu.admin_token,
            flag=str(tmp_path / "try1.flag"),
            table=TABLE,
            staging=str(staging),
            small_sql=small_sql,
            big_sql=big_sql,
        ),
    )
    # Cut once inside the streamed task's second request (the engine resumes within the try), and cut
    # for good once the big upload passes 3 MiB (only it gets there): its try 1 gives up.
    emu.add_fault(Fault("reset", origin="session", at_offset=300_000, times=1))
    emu.add_fault(Fault("reset", origin="session", at_offset=3 * 1024 * 1024, times=None))
    connections = {
        "redivis_default": redivis_connection(emu.base_url, emu.token, **CONN_EXTRA),
        "db_test": db_conn,
    }
    result = home.dag_test(dag_file, "sql_dag", connections=connections, timeout=300)
    assert result.succeeded, result.output[-8000:]
    stored = {u["name"]: u for u in emu.list_uploads(TABLE)}
    assert sorted(stored) == ["stage_killed.csv", "streamed.csv", "upload_killed.csv"]
    assert all(u["status"] == "completed" for u in stored.values()), stored
    assert emu.upload_bytes_path(TABLE, "streamed.csv").read_bytes() == small_expected()
    assert emu.upload_bytes_path(TABLE, "stage_killed.csv").read_bytes() == small_expected()
    assert emu.upload_bytes_path(TABLE, "upload_killed.csv").read_bytes() == big_expected()
    assert stored["upload_killed.csv"]["numRows"] == BIG_ROWS
    # The streamed task's cut was resumed inside its try: no retry of that task, one temp upload each.
    assert "asking the server what it holds" in result.output
    temp_uploads = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/tempUploads")]
    assert len(temp_uploads) == 1
    assert "the worker died while writing the rows" in result.output
    assert "Reusing the complete staged file" in result.output
    assert "Resuming Redivis upload session" in result.output
    assert list(staging.iterdir()) == []  # every staged file and marker deleted after success
    assert emu.token not in result.output
    return result


@pytest.fixture
def emulator(tmp_path: Path):
    with RedivisEmulator(tables=[TABLE], data_dir=tmp_path / "emulator", processing_delay=0.05) as emu:
        yield emu


def test_postgres_staged_and_streamed_with_kills_and_retries_airflow3(
    tmp_path: Path, emulator: RedivisEmulator, postgres: PostgresCluster
) -> None:
    postgres.psql("DROP SEQUENCE IF EXISTS big_runs; CREATE SEQUENCE big_runs;")
    small = "SELECT g AS id, 'row ' || g AS label FROM generate_series(1, 60000) AS g ORDER BY g"
    big = (
        "WITH run AS (SELECT nextval('big_runs') AS n) "
        "SELECT g AS id, md5(g::text) AS label FROM run, generate_series(1, 150000) AS g ORDER BY g"
    )
    home = AirflowHome(tmp_path / "airflow")
    run(home, emulator, tmp_path, postgres.airflow_connection(), small, big)
    assert postgres.psql("SELECT last_value FROM big_runs").strip() == "1"  # the query ran once
    assert home.query("SELECT * FROM task_state_store") == []  # checkpoints deleted on success


def test_sqlite_staged_and_streamed_with_kills_and_retries_airflow2(
    tmp_path: Path, emulator: RedivisEmulator
) -> None:
    python = airflow2_python()
    if python is None:
        pytest.skip("set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)")
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE small (id INTEGER, label TEXT)")
        db.executemany("INSERT INTO small VALUES (?, ?)", [(g, f"row {g}") for g in range(1, SMALL_ROWS + 1)])
        db.execute("CREATE TABLE big (id INTEGER, label TEXT)")
        db.executemany(
            "INSERT INTO big VALUES (?, ?)",
            [(g, hashlib.md5(str(g).encode()).hexdigest()) for g in range(1, BIG_ROWS + 1)],
        )
    home = AirflowHome(tmp_path / "airflow2", python=python)
    run(
        home,
        emulator,
        tmp_path,
        {"conn_type": "sqlite", "host": str(database)},
        "SELECT id, label FROM small ORDER BY id",
        "SELECT id, label FROM big ORDER BY id",
    )
    assert home.query("SELECT key FROM variable") == []  # the fallback checkpoint deleted on success


# -- streamed mode: a retry attaches to the upload its stream made ------------------------------------

WAIT_TABLE = "test_owner.test_dataset.wait_table"

STREAM_RETRY_DAG = """
from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_redivis.transfers.sql_to_redivis import SqlToRedivisOperator

ADMIN = {admin!r}
ADMIN_TOKEN = {admin_token!r}


def clear_faults(context):
    request = urllib.request.Request(
        ADMIN + "/_emulator/faults", method="DELETE", headers={{"X-Emulator-Admin-Token": ADMIN_TOKEN}}
    )
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - the test's emulator on 127.0.0.1


COMMON = dict(conn_id="db_test", mode="streamed", poll_interval=0.2, retries=1, retry_delay=timedelta(seconds=1))

with DAG(dag_id="stream_retry_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    create_lost = SqlToRedivisOperator(task_id="create_lost", sql={create_sql!r}, table={table!r}, **COMMON)
    wait_lost = SqlToRedivisOperator(
        task_id="wait_lost", sql={wait_sql!r}, table={wait_table!r}, wait_timeout=2,
        on_retry_callback=clear_faults, **COMMON
    )
    create_lost >> wait_lost
"""


def run_stream_retries(
    home: AirflowHome, emu: RedivisEmulator, db_conn: dict, create_sql: str, wait_sql: str
) -> None:
    """create_lost: every answer to creating its upload is lost in try 1; wait_lost: try 1's wait fails.

    Each try 2 must attach to the upload its try 1 made: no second query, no second temp upload.
    """
    dag_file = home.write_dag(
        "stream_retry_dag",
        STREAM_RETRY_DAG.format(
            admin=emu.base_url,
            admin_token=emu.admin_token,
            table=TABLE,
            wait_table=WAIT_TABLE,
            create_sql=create_sql,
            wait_sql=wait_sql,
        ),
    )
    emu.add_fault(
        Fault(
            "drop_response",
            origin="api",
            method="POST",
            predicate=lambda info: info.path.endswith(".test_table/uploads"),
            times=3,  # every creation request try 1 sends
        )
    )
    emu.add_fault(
        Fault(
            "status",
            origin="api",
            method="GET",
            status=503,
            predicate=lambda info: ".wait_table:" in info.path and "/uploads/" in info.path,
            times=None,  # until wait_lost's retry callback clears the faults
        )
    )
    connections = {
        "redivis_default": redivis_connection(emu.base_url, emu.token, **CONN_EXTRA),
        "db_test": db_conn,
    }
    result = home.dag_test(dag_file, "stream_retry_dag", connections=connections, timeout=300)
    assert result.succeeded, result.output[-8000:]
    for table in (TABLE, WAIT_TABLE):
        (upload,) = emu.list_uploads(table)
        assert upload["status"] == "completed"
        assert emu.upload_bytes_path(table, upload["name"]).read_bytes() == small_expected()
    assert "the next try asks again, and attaches" in result.output  # create_lost's try 1
    assert "WaitTimeoutError" in result.output  # wait_lost's try 1
    assert result.output.count("the query is not run again") >= 2  # each task's try 2
    temp_uploads = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/tempUploads")]
    assert len(temp_uploads) == 2  # one stream per task
    assert emu.token not in result.output


@pytest.fixture
def two_tables(tmp_path: Path):
    with RedivisEmulator(
        tables=[TABLE, WAIT_TABLE], data_dir=tmp_path / "emulator", processing_delay=0.05
    ) as emu:
        yield emu


def test_streamed_retries_attach_to_their_uploads_airflow3(
    tmp_path: Path, two_tables: RedivisEmulator, postgres: PostgresCluster
) -> None:
    postgres.psql(
        "DROP SEQUENCE IF EXISTS runs_a; CREATE SEQUENCE runs_a; DROP SEQUENCE IF EXISTS runs_b; CREATE SEQUENCE runs_b;"
    )
    counted = (
        "WITH run AS (SELECT nextval('{seq}') AS n) "
        "SELECT g AS id, 'row ' || g AS label FROM run, generate_series(1, 60000) AS g ORDER BY g"
    )
    home = AirflowHome(tmp_path / "airflow")
    run_stream_retries(
        home,
        two_tables,
        postgres.airflow_connection(),
        counted.format(seq="runs_a"),
        counted.format(seq="runs_b"),
    )
    assert postgres.psql("SELECT last_value FROM runs_a").strip() == "1"  # each query ran once
    assert postgres.psql("SELECT last_value FROM runs_b").strip() == "1"
    assert home.query("SELECT * FROM task_state_store") == []  # checkpoints deleted on success


def test_streamed_retries_attach_to_their_uploads_airflow2(
    tmp_path: Path, two_tables: RedivisEmulator
) -> None:
    python = airflow2_python()
    if python is None:
        pytest.skip("set REDIVIS_TEST_AIRFLOW2_PYTHON to an interpreter with Airflow 2.11 (dev/test does)")
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE small (id INTEGER, label TEXT)")
        db.executemany("INSERT INTO small VALUES (?, ?)", [(g, f"row {g}") for g in range(1, SMALL_ROWS + 1)])
    home = AirflowHome(tmp_path / "airflow2", python=python)
    sql = "SELECT id, label FROM small ORDER BY id"
    run_stream_retries(home, two_tables, {"conn_type": "sqlite", "host": str(database)}, sql, sql)
    assert home.query("SELECT key FROM variable") == []  # the fallback checkpoints deleted on success
