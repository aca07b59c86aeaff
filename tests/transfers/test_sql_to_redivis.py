"""SqlToRedivisOperator.execute against a real PostgreSQL, SQLite files and the emulator, in this process.

Each "try" is a call of ``execute`` with the same task state store, as Airflow's retries share it; the
real-Airflow runs (``dag.test()``, real retries) are in ``test_sql_to_redivis_airflow.py``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from redivis_emulator import Fault, RedivisEmulator

from airflow_provider_redivis.checkpoint_store import CHECKPOINT_KEY
from airflow_provider_redivis.engine.creation import MAX_CREATE_POSTS
from airflow_provider_redivis.engine.protocol import CHUNK_UNIT
from airflow_provider_redivis.errors import (
    RedivisConfigError,
    RedivisError,
    UploadInterruptedError,
    WaitTimeoutError,
)
from airflow_provider_redivis.transfers.sql_staging import MARKER_SUFFIX
from airflow_provider_redivis.transfers.sql_to_redivis import SqlToRedivisOperator
from tests.transfers.conftest import DictStateStore, FakeTI
from tests.transfers.postgres_cluster import PostgresCluster

TABLE = "test_owner.test_dataset.test_table"
NAME = "to_redivis.csv"

PG_TYPES = """
DROP TABLE IF EXISTS typed;
CREATE TABLE typed (i int, b bigint, n numeric(20,10), f float8, ok bool, d date, ts timestamp,
                    tz timestamptz, t text, raw bytea);
INSERT INTO typed VALUES
 (1, 9007199254740993, 0.0000000000, 1.5, true, '2026-01-31', '2026-01-31 12:34:56.123456',
  '2026-01-31 12:34:56+02', 'plain', '\\x00ff'),
 (2, NULL, 12345.6789, 'NaN', false, NULL, NULL, NULL, '', NULL),
 (NULL, -1, -1e-7, 1e300, NULL, '0001-01-01', '2026-01-01 00:00:00', '2026-06-01 00:00:00+00',
  E'a,"b"\\nc', '\\x');
"""
PG_QUERY = "SELECT * FROM typed ORDER BY i NULLS LAST"
HEADER = "i,b,n,f,ok,d,ts,tz,t,raw\n"
#: What PostgreSQL's COPY writes (postgres_copy, the default for PostgreSQL): its own text forms.
PG_COPY_CSV = HEADER + (
    "1,9007199254740993,0.0000000000,1.5,t,2026-01-31,2026-01-31 12:34:56.123456,2026-01-31 10:34:56+00,plain,\\x00ff\n"
    '2,,12345.6789000000,NaN,f,,,,"",\n'
    ',-1,-0.0000001000,1e+300,,0001-01-01,2026-01-01 00:00:00,2026-06-01 00:00:00+00,"a,""b""\nc",\\x\n'
)
#: What the cursor path writes (postgres_copy=False, and every other database).
PG_CURSOR_CSV = HEADER + (
    "1,9007199254740993,0.0000000000,1.5,true,2026-01-31,2026-01-31 12:34:56.123456,2026-01-31 10:34:56+00:00,plain,AP8=\n"
    '2,,12345.6789000000,nan,false,,,,"",\n'
    ',-1,-0.0000001000,1e+300,,0001-01-01,2026-01-01 00:00:00,2026-06-01 00:00:00+00:00,"a,""b""\nc",""\n'
)


def operator(**kwargs: Any) -> SqlToRedivisOperator:
    arguments: dict[str, Any] = {"task_id": "to_redivis", "table": TABLE, "poll_interval": 0.05, **kwargs}
    return SqlToRedivisOperator(**arguments)


def stored(emu: RedivisEmulator, name: str = NAME) -> bytes:
    return emu.upload_bytes_path(TABLE, name).read_bytes()


def only_upload(emu: RedivisEmulator) -> dict[str, Any]:
    (upload,) = emu.list_uploads(TABLE)
    return upload


def redivis_calls(emu: RedivisEmulator) -> list[str]:
    """Every request that could create something in Redivis."""
    return [
        f"{r.method} {r.path}"
        for r in emu.requests
        if r.origin == "session" or (r.method == "POST" and r.path.startswith("/api/v1/tables/"))
    ]


@pytest.fixture
def typed_pg(postgres: PostgresCluster) -> PostgresCluster:
    postgres.psql(PG_TYPES)
    return postgres


# -- types, NULLs, quoting, on both databases and both modes --------------------------------------


@pytest.mark.parametrize("mode", ["staged", "streamed"])
@pytest.mark.parametrize(
    ("copy", "expected"), [(None, PG_COPY_CSV), (False, PG_CURSOR_CSV)], ids=["copy", "cursor"]
)
def test_postgres_types_nulls_and_quoting(
    typed_pg: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    mode: str,
    copy: bool | None,
    expected: str,
) -> None:
    result = operator(sql=PG_QUERY, conn_id=pg_conn, mode=mode, postgres_copy=copy).execute(task_context)
    assert stored(redivis_conn) == expected.encode()
    assert result["status"] == "completed"
    assert result["numRows"] == 3
    upload = only_upload(redivis_conn)
    assert upload["hasQuotedNewlines"] is True  # the third row's text holds a line break
    assert upload["hasHeaderRow"] is True
    assert task_context["ti"].xcoms["redivis_sql_rows"] == 3


SQLITE_ROWS = [
    (1, 10.5, "plain", b"\x01\x02", None),
    (2, None, "", None, "x"),
    (3, -0.1, 'he said "hi", then\r\nleft', b"", None),
    (None, 1e-300, "ünïcode ✓", None, None),
]
SQLITE_CSV = (
    "i,r,t,b,n\n"
    "1,10.5,plain,AQI=,\n"
    '2,,"",,x\n'
    '3,-0.1,"he said ""hi"", then\r\nleft","",\n'
    ",1e-300,ünïcode ✓,,\n"
)


def make_sqlite(path: Path, rows: list[tuple[Any, ...]] = SQLITE_ROWS) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE IF EXISTS t")
        db.execute("CREATE TABLE t (i INTEGER, r REAL, t TEXT, b BLOB, n TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)


@pytest.mark.parametrize("mode", ["staged", "streamed"])
def test_sqlite_types_nulls_and_quoting(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any], mode: str
) -> None:
    make_sqlite(sqlite_db)
    sql = "SELECT * FROM t ORDER BY i IS NULL, i"
    result = operator(sql=sql, conn_id="lite_test", mode=mode).execute(task_context)
    assert stored(redivis_conn) == SQLITE_CSV.encode()
    assert result["numRows"] == 4
    assert only_upload(redivis_conn)["hasQuotedNewlines"] is True


def test_no_line_break_in_the_data_leaves_has_quoted_newlines_unset(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    make_sqlite(sqlite_db, [(1, 1.0, "a,b", None, None)])
    operator(sql="SELECT * FROM t", conn_id="lite_test").execute(task_context)
    assert only_upload(redivis_conn)["hasQuotedNewlines"] is None


@pytest.mark.parametrize("copy", [None, False], ids=["copy", "cursor"])
def test_a_null_marker_is_written_and_passed_to_redivis(
    typed_pg: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    copy: bool | None,
) -> None:
    sql = "SELECT i, t FROM typed ORDER BY i NULLS LAST"
    operator(sql=sql, conn_id=pg_conn, null_marker="\\N", postgres_copy=copy).execute(task_context)
    # With a marker an empty field is unambiguous: COPY leaves it unquoted, the cursor path quotes it.
    empty = b"" if copy is None else b'""'
    assert stored(redivis_conn) == b"i,t\n1,plain\n2," + empty + b'\n\\N,"a,""b""\nc"\n'
    assert only_upload(redivis_conn)["nullMarkers"] == ["\\N"]


@pytest.mark.parametrize("mode", ["staged", "streamed"])
def test_parquet(
    typed_pg: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    mode: str,
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    result = operator(sql=PG_QUERY, conn_id=pg_conn, mode=mode, file_format="parquet").execute(task_context)
    assert result["type"] == "parquet"
    table = pq.read_table(redivis_conn.upload_bytes_path(TABLE, "to_redivis.parquet"))
    assert table.num_rows == 3
    assert table.column("t").to_pylist() == ["plain", "", 'a,"b"\nc']
    assert table.column("raw").to_pylist() == [b"\x00\xff", None, b""]
    assert table.column("b").to_pylist() == [9007199254740993, None, -1]
    assert str(table.schema.field("tz").type).startswith("timestamp[us, tz=")
    assert table.column("tz").to_pylist()[0].isoformat().startswith("2026-01-31T10:34:56")


SERIES = "SELECT g AS n FROM generate_series(1, 3) AS g"


@pytest.mark.parametrize("mode", ["staged", "streamed"])
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (f"{SERIES} -- the last line is a comment", b"n\n1\n2\n3\n"),
        (f"{SERIES}; -- a semicolon, then a comment", b"n\n1\n2\n3\n"),
        (f"{SERIES};\n-- a comment on a line of its own\n\n", b"n\n1\n2\n3\n"),
        (f"{SERIES} /* a /* nested */ block */ ;\n-- and a line comment", b"n\n1\n2\n3\n"),
        (
            "-- a comment first\nSELECT g AS n -- the column\nFROM generate_series(1, 3) AS g -- end",
            b"n\n1\n2\n3\n",
        ),
        ("SELECT '--;' AS t -- the string holds what looks like a comment", b"t\n--;\n"),
        ("SELECT $tag$ -- no; $tag$ AS t; -- a dollar-quoted string", b"t\n -- no; \n"),
        ("SELECT E'it\\'s -- no' AS t -- an escaped quote", b"t\nit's -- no\n"),
    ],
    ids=["line", "semicolon-line", "semicolon-newline", "block", "inner", "string", "dollar", "escape"],
)
def test_a_query_ending_in_a_comment_runs_through_copy(
    postgres: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    mode: str,
    sql: str,
    expected: bytes,
) -> None:
    """PostgreSQL and CSV without parameters: COPY, the default. The query runs as it would on its own."""
    caplog.set_level(logging.INFO)
    operator(sql=sql, conn_id=pg_conn, mode=mode).execute(task_context)
    assert stored(redivis_conn) == expected
    assert "as COPY (...) TO STDOUT" in caplog.text


def test_a_query_of_comments_only_fails_clearly(
    postgres: PostgresCluster, pg_conn: str, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    with pytest.raises(AirflowFailException, match="only comments"):
        operator(sql="-- nothing here;\n/* nor here */", conn_id=pg_conn).execute(task_context)
    assert redivis_calls(redivis_conn) == []


# -- empty results, query errors, wrong connections -------------------------------------------------


@pytest.mark.parametrize("mode", ["staged", "streamed"])
@pytest.mark.parametrize("copy", [None, False], ids=["copy", "cursor"])
def test_an_empty_result_uploads_the_header_alone(
    typed_pg: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    mode: str,
    copy: bool | None,
) -> None:
    sql = "SELECT i, t FROM typed WHERE false"
    result = operator(sql=sql, conn_id=pg_conn, mode=mode, postgres_copy=copy).execute(task_context)
    assert stored(redivis_conn) == b"i,t\n"
    assert result["numRows"] == 0
    assert result["status"] == "completed"


@pytest.mark.parametrize("mode", ["staged", "streamed"])
@pytest.mark.parametrize("copy", [None, False], ids=["copy", "cursor"])
def test_a_query_error_is_raised_and_nothing_is_created(
    typed_pg: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    mode: str,
    copy: bool | None,
) -> None:
    import psycopg

    with pytest.raises(psycopg.errors.UndefinedTable, match="no_such_table"):
        operator(sql="SELECT * FROM no_such_table", conn_id=pg_conn, mode=mode, postgres_copy=copy).execute(
            task_context
        )
    assert redivis_calls(redivis_conn) == []
    assert redivis_conn.sessions == {}
    assert redivis_conn.list_uploads(TABLE) == []
    staging = Path(task_context["ti"].dag_id)
    assert not any(Path(p).name.endswith(".csv") for p in staging.glob("**/*"))


def test_a_query_that_fails_midway_creates_nothing_in_staged_mode(
    typed_pg: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    tmp_path: Path,
) -> None:
    import psycopg

    sql = "SELECT g, 1 / (g - 150000) AS boom FROM generate_series(1, 200000) AS g"
    with pytest.raises(psycopg.errors.DivisionByZero):
        operator(sql=sql, conn_id=pg_conn, staging_path=str(tmp_path / "s" / "out.csv")).execute(task_context)
    assert redivis_calls(redivis_conn) == []
    assert list((tmp_path / "s").iterdir()) == []  # the partial file is gone, no marker


def test_sqlite_query_error(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        operator(sql="SELECT * FROM missing", conn_id="lite_test", mode="streamed").execute(task_context)
    assert redivis_calls(redivis_conn) == []


@pytest.mark.parametrize("mode", ["staged", "streamed"])
def test_a_bad_rendered_upload_option_fails_before_the_query_and_the_first_byte(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    make_sqlite(sqlite_db)
    op = operator(
        sql="SELECT * FROM t", conn_id="lite_test", mode=mode, staging_path=str(tmp_path / "s" / "out.csv")
    )
    op.metadata = "{'a': {'label': 'A'}}"  # what '{{ params.meta }}' renders a dict to: Python text
    with pytest.raises(AirflowFailException, match="metadata must be a mapping of variable names"):
        op.execute(task_context)
    assert redivis_calls(redivis_conn) == []
    assert not (tmp_path / "s").exists()  # the query did not run either


def test_a_connection_that_is_not_a_database_fails_clearly(
    redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    with pytest.raises(AirflowFailException, match="not a SQL database hook"):
        operator(sql="SELECT 1", conn_id="redivis_default").execute(task_context)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fast"}, "mode must be one of"),
        ({"file_format": "xlsx"}, "file_format must be one of"),
        ({"fetch_size": 0}, "fetch_size"),
        ({"null_marker": "a,b"}, "null_marker"),
        ({"null_marker": "NA", "file_format": "parquet"}, "CSV only"),
        ({"mode": "streamed", "chunk_size": 64 * 1024 * 1024}, "too large for mode='streamed'"),
        ({"source": "/x.csv"}, "give sql, not source"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RedivisConfigError, match=message):
        operator(sql="SELECT 1", conn_id="x", **kwargs)


# -- staging: where, cleanup, reuse ------------------------------------------------------------------


def test_the_default_staging_path_is_keyed_by_run_and_removed_after_success(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any], tmp_path: Path
) -> None:
    make_sqlite(sqlite_db)
    task_context["ti"] = FakeTI(map_index=3)
    op = operator(sql="SELECT * FROM t", conn_id="lite_test")
    path = op._staged_path(task_context)
    assert (
        path
        == tmp_path
        / "tmp"
        / "airflow-redivis-staging"
        / "sql_dag"
        / "manual__2026-12-02T00_00_00_00_00"
        / "to_redivis.3.csv"
    )
    op.execute(task_context)
    assert only_upload(redivis_conn)["name"] == "to_redivis_3.csv"
    assert not path.exists()
    assert not Path(str(path) + MARKER_SUFFIX).exists()


def test_keep_staged_file(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any], tmp_path: Path
) -> None:
    make_sqlite(sqlite_db)
    target = tmp_path / "exports" / "{{ ds }}.csv"
    op = operator(
        sql="SELECT * FROM t",
        conn_id="lite_test",
        staging_path=str(tmp_path / "exports" / "day.csv"),
        keep_staged_file=True,
        upload_name="day.csv",
    )
    op.execute(task_context)
    staged = tmp_path / "exports" / "day.csv"
    assert staged.read_bytes() == stored(redivis_conn, "day.csv")
    marker = json.loads((tmp_path / "exports" / f"day.csv{MARKER_SUFFIX}").read_text())
    assert marker["rows"] == 4
    assert marker["bytes"] == staged.stat().st_size
    assert marker["has_quoted_newlines"] is True
    assert not target.exists()


def test_a_staged_file_of_another_query_is_written_again(
    sqlite_db: Path,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_sqlite(sqlite_db)
    staging = str(tmp_path / "s.csv")
    first = operator(
        sql="SELECT i FROM t",
        conn_id="lite_test",
        staging_path=staging,
        keep_staged_file=True,
        upload_name="first.csv",
    )
    first.execute(task_context)
    caplog.set_level(logging.INFO)
    second = operator(
        sql="SELECT t FROM t", conn_id="lite_test", staging_path=staging, upload_name="second.csv"
    )
    second.execute({"ti": FakeTI(), "task_state_store": DictStateStore()})
    assert "is of another query" in caplog.text
    assert stored(redivis_conn, "second.csv").startswith(b"t\nplain\n")


@pytest.mark.parametrize("left_by", ["keep_staged_file", "a failed run"])
def test_a_later_run_never_uploads_an_earlier_runs_staged_file(
    sqlite_db: Path,
    redivis_conn: RedivisEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    left_by: str,
) -> None:
    """A fixed staging_path and the same query text: yesterday's file is replaced, never loaded as today's."""
    staging = tmp_path / "exports" / "daily.csv"
    sql = "SELECT i, t FROM t"
    make_sqlite(sqlite_db, [(1, 1.0, "yesterday", None, None)])
    yesterday = {"ti": FakeTI(run_id="scheduled__2026-12-01"), "task_state_store": DictStateStore()}
    first = operator(
        sql=sql,
        conn_id="lite_test",
        staging_path=str(staging),
        keep_staged_file=left_by == "keep_staged_file",
        upload_name="day1.csv",
    )
    if left_by == "a failed run":
        redivis_conn.add_fault(Fault("status", origin="session", status=400, times=1))
        with pytest.raises(AirflowFailException):
            first.execute(yesterday)
    else:
        first.execute(yesterday)
    assert staging.read_bytes() == b"i,t\n1,yesterday\n"  # left there, with its marker
    assert Path(f"{staging}{MARKER_SUFFIX}").exists()
    make_sqlite(sqlite_db, [(2, 2.0, "today", None, None)])
    caplog.set_level(logging.INFO)
    today = {"ti": FakeTI(run_id="scheduled__2026-12-02"), "task_state_store": DictStateStore()}
    operator(sql=sql, conn_id="lite_test", staging_path=str(staging), upload_name="day2.csv").execute(today)
    assert stored(redivis_conn, "day2.csv") == b"i,t\n2,today\n"
    assert "belongs to dag 'sql_dag', run 'scheduled__2026-12-01'" in caplog.text
    assert "Reusing the complete staged file" not in caplog.text
    assert list(staging.parent.iterdir()) == []  # today's own file, deleted after its success


def test_a_staged_file_changed_after_its_marker_was_written_is_written_again(
    sqlite_db: Path,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Same task instance, same query, same size: the marker's modification time tells the bytes changed."""
    make_sqlite(sqlite_db)
    staging = tmp_path / "s" / "out.csv"
    op = operator(sql="SELECT * FROM t ORDER BY i IS NULL, i", conn_id="lite_test", staging_path=str(staging))
    # Try 1 fails after staging: the file and its marker stay for the next try.
    redivis_conn.add_fault(Fault("status", origin="session", status=400, times=1))
    with pytest.raises(AirflowFailException):
        op.execute(task_context)
    assert staging.read_bytes() == SQLITE_CSV.encode()
    staging.write_bytes(SQLITE_CSV.encode().replace(b"plain", b"PLAIN"))  # same size, other bytes
    caplog.set_level(logging.INFO)
    op.execute(task_context)
    assert stored(redivis_conn) == SQLITE_CSV.encode()
    assert "the staged file changed after its marker was written" in caplog.text


def test_the_default_poll_interval_is_10_s_deferred_and_the_least_interval_in_the_worker(
    sqlite_db: Path, redivis_conn: RedivisEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    make_sqlite(sqlite_db)
    monkeypatch.setenv("AIRFLOW__REDIVIS__MIN_POLL_INTERVAL", "0.3")
    arguments = {"task_id": "to_redivis", "table": TABLE, "sql": "SELECT i FROM t", "conn_id": "lite_test"}
    deferred_run = {"ti": FakeTI(run_id="manual__1"), "task_state_store": DictStateStore()}
    with pytest.raises(TaskDeferred) as deferred:
        SqlToRedivisOperator(**arguments, deferrable=True, upload_name="deferred.csv").execute(deferred_run)
    # Deferred, the waits on one table share their checks: the first comes after 10 s, as before.
    assert deferred.value.trigger.poll_interval == 10.0
    redivis_conn.clear_requests()
    worker_run = {"ti": FakeTI(run_id="manual__2"), "task_state_store": DictStateStore()}
    result = SqlToRedivisOperator(**arguments, upload_name="waited.csv").execute(worker_run)
    assert result["status"] == "completed"
    checks = [
        r.started_at for r in redivis_conn.requests if r.method == "GET" and r.path.endswith(result["uri"])
    ]
    # In the worker, a steady pace of [redivis] min_poll_interval (0.3 s here).
    assert len(checks) >= 2
    assert all(0.29 <= b - a < 1.0 for a, b in itertools.pairwise(checks))  # not 10 s, as it was


def test_a_finished_run_never_deletes_the_staged_file_another_run_wrote_in_its_place(
    sqlite_db: Path, redivis_conn: RedivisEmulator, tmp_path: Path
) -> None:
    """Run 1 waits deferred; run 2 writes its own file at the same staging_path; run 1's end leaves it."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    make_sqlite(sqlite_db)
    staging = tmp_path / "exports" / "daily.csv"
    one = {"ti": FakeTI(run_id="scheduled__2026-12-01"), "task_state_store": DictStateStore()}
    waiting = operator(
        sql="SELECT i FROM t",
        conn_id="lite_test",
        staging_path=str(staging),
        deferrable=True,
        upload_name="one.csv",
    )
    with pytest.raises(TaskDeferred):
        waiting.execute(one)
    two = {"ti": FakeTI(run_id="scheduled__2026-12-02"), "task_state_store": DictStateStore()}
    operator(
        sql="SELECT t FROM t", conn_id="lite_test", staging_path=str(staging), keep_staged_file=True,
        upload_name="two.csv",
    ).execute(two)  # fmt: skip
    theirs = staging.read_bytes()
    assert theirs == stored(redivis_conn, "two.csv")
    upload = next(u for u in redivis_conn.list_uploads(TABLE) if u["name"] == "one.csv")
    deadline = time.monotonic() + 10
    while upload["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
        upload = next(u for u in redivis_conn.list_uploads(TABLE) if u["name"] == "one.csv")
    waiting.execute_complete(one, {"status": "success", "upload": upload})
    assert staging.read_bytes() == theirs
    marker = json.loads(Path(f"{staging}{MARKER_SUFFIX}").read_text())
    assert marker["task_instance"]["run_id"] == "scheduled__2026-12-02"


# -- a try that dies, and the retry ---------------------------------------------------------------------


class FailingCursor:
    """Wraps a cursor: fetchmany raises after ``after`` batches (a worker dying mid-query)."""

    def __init__(self, cursor: Any, after: int) -> None:
        self._cursor = cursor
        self._left = after

    def fetchmany(self, size: int) -> Any:
        if self._left == 0:
            raise ConnectionResetError("the worker died while writing the rows")
        self._left -= 1
        return self._cursor.fetchmany(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class DyingOnce(SqlToRedivisOperator):
    fail_after: int | None = None

    def open_cursor(self, conn: Any) -> Any:
        cursor = super().open_cursor(conn)
        if self.fail_after is None:
            return cursor
        return FailingCursor(cursor, self.fail_after)


BIG_SQL = (
    "SELECT g AS id, 'row ' || g AS label, g * 0.5 AS half FROM generate_series(1, 60000) AS g ORDER BY g"
)


def expected_big(rows: int = 60000) -> bytes:
    lines = ["id,label,half\n"] + [f"{g},row {g},{g * 0.5:.1f}\n" for g in range(1, rows + 1)]
    return "".join(lines).encode()


def test_killed_while_staging_then_the_retry_writes_it_again(
    postgres: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    tmp_path: Path,
) -> None:
    staging = tmp_path / "stage" / "big.csv"
    op = DyingOnce(
        task_id="to_redivis",
        sql=BIG_SQL,
        conn_id=pg_conn,
        table=TABLE,
        poll_interval=0.05,
        staging_path=str(staging),
        postgres_copy=False,
        fetch_size=1000,
    )
    op.fail_after = 5
    with pytest.raises(ConnectionResetError):
        op.execute(task_context)
    assert list(staging.parent.iterdir()) == []  # no partial file, no marker
    assert redivis_calls(redivis_conn) == []
    op.fail_after = None
    result = op.execute(task_context)  # the retry
    assert result["numRows"] == 60000
    assert stored(redivis_conn, "to_redivis.csv") == expected_big()
    assert list(staging.parent.iterdir()) == []  # cleaned up after success


KILLED_WHILE_STAGING = """
import sys
import threading
from pathlib import Path

from airflow_provider_redivis.transfers.sql_to_redivis import SqlToRedivisOperator
from tests.transfers.conftest import DictStateStore, FakeTI

STAGING, FLAG, SQL = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


class Stalls:
    \"\"\"The fifth batch never comes: the rows of the first are in the partial file by then.\"\"\"

    def __init__(self, cursor):
        self._cursor, self._batches = cursor, 0

    def fetchmany(self, size):
        self._batches += 1
        if self._batches == 5:
            FLAG.write_text("staging")
            threading.Event().wait()  # until SIGKILL
        return self._cursor.fetchmany(size)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class Op(SqlToRedivisOperator):
    def open_cursor(self, conn):
        return Stalls(super().open_cursor(conn))


Op(
    task_id="to_redivis", sql=SQL, conn_id="pg_test", table="test_owner.test_dataset.test_table",
    staging_path=STAGING, postgres_copy=False, fetch_size=1000,
).execute({"ti": FakeTI(), "task_state_store": DictStateStore()})
"""
WIDE_SQL = "SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, 20000) AS g ORDER BY g"


@pytest.mark.slow
def test_a_try_killed_while_staging_leaves_no_partial_file_behind_its_retry(
    postgres: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    tmp_path: Path,
) -> None:
    """SIGKILL mid-write: no cleanup runs in that try; the next try of the task instance removes its partial."""
    staging = tmp_path / "stage" / "wide.csv"
    staging.parent.mkdir()
    theirs = staging.parent / "wide.csv.partial-0123456789abcdef"  # another task instance's, writing
    theirs.write_bytes(b"not ours")
    flag = tmp_path / "staging.flag"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WHILE_STAGING)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    killed = subprocess.Popen([sys.executable, str(script), str(staging), str(flag), WIDE_SQL], env=env)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists() and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert flag.exists(), "the try never reached the fifth batch"
    finally:
        killed.kill()
        killed.wait(timeout=30)
    (leftover,) = (p for p in staging.parent.iterdir() if p != theirs)  # the killed try's partial file
    assert leftover.name.startswith("wide.csv.partial-")
    assert leftover.stat().st_size > 0
    result = operator(
        sql=WIDE_SQL, conn_id=pg_conn, staging_path=str(staging), postgres_copy=False, fetch_size=1000
    ).execute(task_context)  # the retry: the same task instance
    assert result["numRows"] == 20000
    assert [p.name for p in staging.parent.iterdir()] == [theirs.name]  # only the other's, untouched
    assert theirs.read_bytes() == b"not ours"


@pytest.mark.slow
def test_killed_while_uploading_then_the_retry_resumes_without_querying_again(
    postgres: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    postgres.psql("DROP SEQUENCE IF EXISTS query_runs; CREATE SEQUENCE query_runs;")
    sql = (
        "WITH run AS (SELECT nextval('query_runs') AS n) "
        "SELECT g AS id, md5(g::text) AS label FROM run, generate_series(1, 150000) AS g ORDER BY g"
    )
    staging = tmp_path / "stage" / "big.csv"
    op = operator(sql=sql, conn_id=pg_conn, staging_path=str(staging), chunk_size=CHUNK_UNIT * 4)
    # The network goes for good once 2 MiB are with Redivis: try 1 gives up mid-upload.
    redivis_conn.add_fault(Fault("reset", origin="session", at_offset=2 * 1024 * 1024, times=None))
    with pytest.raises(UploadInterruptedError):
        op.execute(task_context)
    assert staging.exists()
    assert Path(f"{staging}{MARKER_SUFFIX}").exists()
    size = staging.stat().st_size
    expected = staging.read_bytes()
    redivis_conn.clear_faults()
    caplog.set_level(logging.INFO)
    result = op.execute(task_context)  # the retry
    assert "Reusing the complete staged file" in caplog.text
    assert "Resuming Redivis upload session" in caplog.text
    assert postgres.psql("SELECT last_value FROM query_runs").strip() == "1"  # the query ran once
    assert result["numRows"] == 150000
    assert stored(redivis_conn) == expected
    assert redivis_conn.bytes_received("session") < size + 2 * 1024 * 1024
    assert len(redivis_conn.list_uploads(TABLE)) == 1
    assert not staging.exists()


def test_streamed_resumes_within_the_try_after_cut_requests(
    postgres: PostgresCluster, pg_conn: str, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    # Two cuts in the middle of requests, within the connection's retry budget: the engine seeks back.
    redivis_conn.add_fault(Fault("reset", origin="session", at_offset=300_000, times=1))
    redivis_conn.add_fault(Fault("reset", origin="session", at_offset=1_100_000, times=1))
    op = operator(sql=BIG_SQL, conn_id=pg_conn, mode="streamed", chunk_size=CHUNK_UNIT)
    result = op.execute(task_context)
    assert stored(redivis_conn) == expected_big()
    assert result["numRows"] == 60000
    faults = [r for r in redivis_conn.requests if r.faults]
    assert len(faults) == 2


@pytest.mark.slow
def test_streamed_killed_midway_then_the_retry_starts_over(
    postgres: PostgresCluster,
    pg_conn: str,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    redivis_conn.add_fault(Fault("reset", origin="session", at_offset=1024 * 1024, times=None))
    op = operator(sql=BIG_SQL, conn_id=pg_conn, mode="streamed", chunk_size=CHUNK_UNIT * 4)
    with pytest.raises(UploadInterruptedError):
        op.execute(task_context)
    assert redivis_conn.list_uploads(TABLE) == []
    assert task_context["task_state_store"].values[CHECKPOINT_KEY]["phase"] == "transferring"
    redivis_conn.clear_faults()
    caplog.set_level(logging.INFO)
    op.execute(task_context)
    assert "stream into temp upload" in caplog.text
    assert "never finished" in caplog.text
    assert stored(redivis_conn) == expected_big()
    assert len(redivis_conn.list_uploads(TABLE)) == 1
    temp_posts = [r for r in redivis_conn.requests if r.method == "POST" and r.path.endswith("/tempUploads")]
    assert len(temp_posts) == 2  # a new try, a new temp upload


COUNTED_SQL = (
    "WITH run AS (SELECT nextval('stream_runs') AS n) "
    "SELECT g AS id, 'row ' || g AS label FROM run, generate_series(1, 60000) AS g ORDER BY g"
)
COUNTED_CSV = ("id,label\n" + "".join(f"{g},row {g}\n" for g in range(1, 60001))).encode()


def temp_upload_posts(emu: RedivisEmulator) -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path.endswith("/tempUploads")]


@pytest.fixture
def counted(postgres: PostgresCluster) -> PostgresCluster:
    """COUNTED_SQL bumps a sequence each time it runs."""
    postgres.psql("DROP SEQUENCE IF EXISTS stream_runs; CREATE SEQUENCE stream_runs;")
    return postgres


def test_streamed_retry_attaches_to_its_upload_when_every_answer_to_creating_it_was_lost(
    counted: PostgresCluster, pg_conn: str, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    # Every creation request of try 1 reaches Redivis (the first creates the upload), no answer comes back.
    redivis_conn.add_fault(
        Fault("drop_response", origin="api", method="POST", path_contains="/uploads", times=MAX_CREATE_POSTS)
    )
    op = operator(sql=COUNTED_SQL, conn_id=pg_conn, mode="streamed")
    with pytest.raises(RedivisError, match="the next try asks again, and attaches"):
        op.execute(task_context)
    (made,) = redivis_conn.list_uploads(TABLE)
    result = op.execute(task_context)  # the retry
    assert result["uri"] == made["uri"]
    assert result["status"] == "completed"
    assert len(redivis_conn.list_uploads(TABLE)) == 1
    assert counted.psql("SELECT last_value FROM stream_runs").strip() == "1"  # the query ran once
    assert len(temp_upload_posts(redivis_conn)) == 1
    assert stored(redivis_conn) == COUNTED_CSV
    assert task_context["ti"].xcoms["redivis_sql_rows"] == 60000
    # What the store holds: the temp upload, the phase, the upload's uri; no session URL, no token.
    saved = task_context["task_state_store"].values[CHECKPOINT_KEY]
    assert (saved["transport"], saved["phase"], saved["upload_uri"]) == (
        "temp_upload",
        "created",
        made["uri"],
    )
    assert saved["session_url"] == ""
    assert "session_url_sealed" not in saved
    assert saved["stream"]["rows"] == 60000
    text = json.dumps(saved)
    assert redivis_conn.token not in text
    assert "127.0.0.1" not in text


def test_streamed_retry_attaches_to_its_upload_when_the_wait_for_processing_failed(
    counted: PostgresCluster, pg_conn: str, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    # Try 1 creates the upload, then every status check (a GET of the upload's uri, which ends in its id)
    # fails until its wait's deadline.
    redivis_conn.add_fault(
        Fault(
            "status",
            origin="api",
            method="GET",
            path_contains="/uploads/",
            predicate=lambda request: request.path.rsplit("/", 1)[-1].isdigit(),
            status=503,
            times=None,
        )
    )
    op = operator(sql=COUNTED_SQL, conn_id=pg_conn, mode="streamed", wait_timeout=1)
    with pytest.raises(WaitTimeoutError):
        op.execute(task_context)
    (made,) = redivis_conn.list_uploads(TABLE)
    redivis_conn.clear_faults()
    result = op.execute(task_context)  # the retry
    assert result["uri"] == made["uri"]
    assert result["status"] == "completed"
    assert len(redivis_conn.list_uploads(TABLE)) == 1
    assert counted.psql("SELECT last_value FROM stream_runs").strip() == "1"
    assert len(temp_upload_posts(redivis_conn)) == 1
    creates = [r for r in redivis_conn.requests if r.method == "POST" and r.path.endswith("/uploads")]
    assert len(creates) == 1  # attached by its uri, not asked again


def test_a_streamed_checkpoint_of_another_query_is_not_attached(
    sqlite_db: Path,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The DAG changed the query between tries: the earlier upload is not this query's rows."""
    make_sqlite(sqlite_db)
    redivis_conn.add_fault(
        Fault("drop_response", origin="api", method="POST", path_contains="/uploads", times=MAX_CREATE_POSTS)
    )
    with pytest.raises(RedivisError):
        operator(sql="SELECT i FROM t", conn_id="lite_test", mode="streamed").execute(task_context)
    caplog.set_level(logging.INFO)
    with pytest.raises(AirflowFailException, match="already has an upload"):
        operator(sql="SELECT t FROM t", conn_id="lite_test", mode="streamed").execute(task_context)
    assert "the checkpoint is of another query" in caplog.text
    assert stored(redivis_conn).startswith(b"i\n")  # left as it was


@pytest.mark.parametrize("if_exists", ["skip", "replace", "fail"])
def test_streamed_if_exists(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any], if_exists: str
) -> None:
    make_sqlite(sqlite_db)
    operator(sql="SELECT i FROM t", conn_id="lite_test", mode="streamed").execute(task_context)
    op = operator(sql="SELECT t FROM t", conn_id="lite_test", mode="streamed", if_exists=if_exists)
    if if_exists == "fail":
        with pytest.raises(AirflowFailException, match="already has an upload"):
            op.execute(task_context)
        return
    op.execute(task_context)
    (upload,) = redivis_conn.list_uploads(TABLE)
    first_line = stored(redivis_conn).split(b"\n")[0]
    assert first_line == (b"i" if if_exists == "skip" else b"t")
    deadline = time.monotonic() + 5
    while upload["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
        (upload,) = redivis_conn.list_uploads(TABLE)


def name_checks(emu: RedivisEmulator) -> list[str]:
    """Requests that asked Redivis about an upload by its name (not by its uri, which ends in its id)."""
    return [
        f"{r.method} {r.path}"
        for r in emu.requests
        if r.method in ("GET", "HEAD") and "/uploads/" in r.path and not r.path.rsplit("/", 1)[-1].isdigit()
    ]


@pytest.mark.parametrize("there", [False, True], ids=["absent", "there"])
def test_staged_skip_asks_about_its_name_once(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any], there: bool
) -> None:
    """Staged mode looks before the query (to skip it); that look also answers the upload's if_exists."""
    make_sqlite(sqlite_db)
    if there:
        operator(sql="SELECT i FROM t", conn_id="lite_test").execute(task_context)
        task_context = {"ti": FakeTI(), "task_state_store": DictStateStore()}
    redivis_conn.clear_requests()
    operator(sql="SELECT t FROM t", conn_id="lite_test", if_exists="skip").execute(task_context)
    assert name_checks(redivis_conn) == [f"GET /api/v1/tables/{TABLE}/uploads/to_redivis_csv"]
    assert stored(redivis_conn).split(b"\n")[0] == (b"i" if there else b"t")


def test_streamed_attaches_to_its_own_upload_when_the_answer_to_creating_it_is_lost(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    make_sqlite(sqlite_db)
    # Redivis creates the upload, but its answer never arrives.
    redivis_conn.add_fault(
        Fault("drop_response", origin="api", method="POST", path_contains="/uploads", times=1)
    )
    result = operator(sql="SELECT i FROM t", conn_id="lite_test", mode="streamed").execute(task_context)
    (upload,) = redivis_conn.list_uploads(TABLE)
    assert result["uri"] == upload["uri"]
    creates = [r for r in redivis_conn.requests if r.method == "POST" and r.path.endswith("/uploads")]
    assert len(creates) == 2  # asked again; Redivis said the temp upload's upload exists


def test_streamed_never_adopts_another_upload_under_its_name_after_a_lost_answer(
    sqlite_db: Path, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    make_sqlite(sqlite_db)
    operator(sql="SELECT t FROM t", conn_id="lite_test", mode="streamed").execute(task_context)
    (theirs,) = redivis_conn.list_uploads(TABLE)
    # Another task's upload holds the name, but the check before sending misses it (it shows late), and the
    # answer to our request to create the upload (refused: the name is taken) is lost.
    redivis_conn.add_fault(
        Fault("status", method="GET", origin="api", path_contains="/uploads/", status=404, times=1)
    )
    redivis_conn.add_fault(
        Fault("drop_response", origin="api", method="POST", path_contains="/uploads", times=1)
    )
    op = operator(sql="SELECT i FROM t", conn_id="lite_test", mode="streamed")
    with pytest.raises(AirflowFailException, match="that this task did not create"):
        op.execute(task_context)
    (upload,) = redivis_conn.list_uploads(TABLE)
    assert upload["uri"] == theirs["uri"]
    assert stored(redivis_conn).split(b"\n")[0] == b"t"  # left as it was


class Psycopg2Operator(SqlToRedivisOperator):
    """The same operator on a psycopg2 connection (PostgresHook picks psycopg 3 where it is installed)."""

    uri = ""

    def get_db_hook(self) -> Any:
        import psycopg2

        uri = self.uri

        class Psycopg2Hook:
            def get_conn(self) -> Any:
                return psycopg2.connect(uri)

        return Psycopg2Hook()


@pytest.mark.parametrize("mode", ["staged", "streamed"])
@pytest.mark.parametrize(
    ("copy", "expected"), [(None, PG_COPY_CSV), (False, PG_CURSOR_CSV)], ids=["copy", "cursor"]
)
def test_postgres_through_psycopg2(
    typed_pg: PostgresCluster,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    mode: str,
    copy: bool | None,
    expected: str,
) -> None:
    pytest.importorskip("psycopg2")
    Psycopg2Operator.uri = typed_pg.uri
    op = Psycopg2Operator(
        task_id="to_redivis", table=TABLE, poll_interval=0.05, sql=PG_QUERY, conn_id="unused", mode=mode,
        postgres_copy=copy,
    )  # fmt: skip
    result = op.execute(task_context)
    assert stored(redivis_conn) == expected.encode()
    assert result["numRows"] == 3
    assert only_upload(redivis_conn)["hasQuotedNewlines"] is True
    assert task_context["ti"].xcoms["redivis_sql_rows"] == 3


def test_psycopg2_query_error_creates_nothing(
    typed_pg: PostgresCluster, redivis_conn: RedivisEmulator, task_context: dict[str, Any]
) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    Psycopg2Operator.uri = typed_pg.uri
    for mode in ("staged", "streamed"):
        op = Psycopg2Operator(
            task_id="to_redivis", table=TABLE, sql="SELECT * FROM nope", conn_id="unused", mode=mode
        )
        with pytest.raises(psycopg2.errors.UndefinedTable):
            op.execute(task_context)
    assert redivis_calls(redivis_conn) == []


def test_staged_skip_runs_no_query_when_the_upload_exists(
    sqlite_db: Path,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_sqlite(sqlite_db)
    operator(sql="SELECT i FROM t", conn_id="lite_test").execute(task_context)
    caplog.set_level(logging.INFO)
    result = operator(sql="SELECT * FROM missing_table", conn_id="lite_test", if_exists="skip").execute(
        {"ti": FakeTI(), "task_state_store": DictStateStore()}
    )
    assert "runs no query" in caplog.text
    assert result["name"] == NAME
    assert stored(redivis_conn).startswith(b"i\n")


@pytest.mark.parametrize("mode", ["staged", "streamed"])
def test_bind_parameters_on_both_databases(
    typed_pg: PostgresCluster,
    pg_conn: str,
    sqlite_db: Path,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    mode: str,
) -> None:
    make_sqlite(sqlite_db)
    operator(
        sql="SELECT i, t FROM typed WHERE i = %(i)s", parameters={"i": 1}, conn_id=pg_conn, mode=mode,
        upload_name="pg.csv",
    ).execute(task_context)  # fmt: skip
    assert stored(redivis_conn, "pg.csv") == b"i,t\n1,plain\n"  # parameters: the cursor path, not COPY
    operator(
        sql="SELECT i, t FROM t WHERE i = ?", parameters=[2], conn_id="lite_test", mode=mode,
        upload_name="lite.csv",
    ).execute({"ti": FakeTI(), "task_state_store": DictStateStore()})  # fmt: skip
    assert stored(redivis_conn, "lite.csv") == b'i,t\n2,""\n'


def test_staging_on_object_storage(
    sqlite_db: Path,
    redivis_conn: RedivisEmulator,
    task_context: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An ObjectStoragePath (here file://; s3:// and gs:// go through the same fsspec calls)."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    make_sqlite(sqlite_db)
    where = f"file://{tmp_path}/bucket"
    staged = ObjectStoragePath(f"{where}/run/out.csv")
    op = operator(sql="SELECT * FROM t ORDER BY i IS NULL, i", conn_id="lite_test", staging_path=staged)
    redivis_conn.add_fault(
        Fault("status", origin="session", status=400, times=1)
    )  # try 1 fails after staging
    with pytest.raises(AirflowFailException):
        op.execute(task_context)
    assert staged.exists()
    assert ObjectStoragePath(f"{where}/run/out.csv{MARKER_SUFFIX}").exists()
    assert staged.read_bytes() == SQLITE_CSV.encode()
    caplog.set_level(logging.INFO)
    op.execute({"ti": FakeTI(), "task_state_store": DictStateStore()})  # a cleared task: reuses the file
    assert "Reusing the complete staged file" in caplog.text
    assert stored(redivis_conn) == SQLITE_CSV.encode()
    assert not staged.exists()
