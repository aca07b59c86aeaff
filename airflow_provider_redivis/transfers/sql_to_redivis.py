"""SqlToRedivisOperator: the result of a SQL query, from any common.sql connection, into a Redivis table.

Two modes:

- ``staged`` (default): the rows are written to a file (``staging_path``), completed by an atomic rename
  and a marker, then sent by :class:`RedivisResumableUploadOperator`'s own engine and checkpoint. A retry
  that finds the complete file does not run the query again, and resumes the upload where it stopped.
- ``streamed``: the rows go straight into an upload session of unknown size, with at most one request
  of bytes in memory. A network failure inside the try resumes; a new try starts over (new session,
  query again).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import tenacity
from airflow.providers.common.compat.sdk import AirflowFailException, BaseHook

from airflow_provider_redivis.checkpoint_store import checkpoint_store_for
from airflow_provider_redivis.errors import (
    RedivisConfigError,
    RedivisConflictError,
    RedivisError,
    RedivisNotFoundError,
    is_final,
)
from airflow_provider_redivis.hooks.auth import mask_session_url
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator
from airflow_provider_redivis.references import is_template, validate_table_reference
from airflow_provider_redivis.retry import is_retryable_error
from airflow_provider_redivis.sources import open_source
from airflow_provider_redivis.transfers.sql_encoding import (
    EncodeStats,
    copy_csv_blocks,
    csv_blocks,
    parquet_blocks,
    validate_null_marker,
)
from airflow_provider_redivis.transfers.stream_reader import StreamReader
from airflow_provider_redivis.upload_options import validate_upload_name
from airflow_provider_redivis.upload_protocol import MAX_UNKNOWN_TOTAL_REQUEST_SIZE, redact_session_url
from airflow_provider_redivis.upload_status import (
    summarize_upload,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

log = logging.getLogger(__name__)

MODES = ("staged", "streamed")
FILE_FORMATS = ("csv", "parquet")
XCOM_ROWS = "redivis_sql_rows"
#: The marker beside a complete staged file: its presence (with the right size) is the proof.
MARKER_SUFFIX = ".complete.json"
#: The default ``staging_path`` lives under this directory of the worker's temp dir.
DEFAULT_STAGING_DIR = "airflow-redivis-staging"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def default_staging_path(context: Any, file_format: str) -> Path:
    """``{tmp}/airflow-redivis-staging/{dag_id}/{run_id}/{task_id}[.{map_index}].{csv|parquet}``."""
    ti = context["ti"]

    def safe(text: object) -> str:
        return _UNSAFE.sub("_", str(text)).strip("._") or "_"

    map_index = getattr(ti, "map_index", -1)
    name = safe(ti.task_id) + (f".{map_index}" if map_index is not None and map_index >= 0 else "")
    return (
        Path(tempfile.gettempdir())
        / DEFAULT_STAGING_DIR
        / safe(ti.dag_id)
        / safe(ti.run_id)
        / f"{name}.{file_format}"
    )


def _psycopg_copy_chunks(conn: Any, copy_sql: str, stats: EncodeStats) -> Iterator[bytes]:
    """``COPY ... TO STDOUT`` on a psycopg (3) connection, through its libpq handle, in ~1 MiB pieces.

    libpq hands COPY data over one row at a time, so the Python around each row is what costs: staging
    500,000 rows through psycopg's ``Copy`` iterator took 1.2 s where this loop took 0.5 s and ``psql``'s
    ``\\copy`` 0.35 s (one measurement on the shared 2-core machine). Errors (a bad query, one that fails
    halfway) come back as psycopg's own exceptions.
    """
    from psycopg import errors, pq

    encoding = conn.info.encoding
    pgconn = conn.pgconn
    pgconn.send_query(copy_sql.encode(encoding))
    result = pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        while pgconn.get_result() is not None:
            pass
        raise errors.error_from_result(result, encoding=encoding)
    get = pgconn.get_copy_data
    pending: list[Any] = []
    append = pending.append
    held = 0
    while True:
        size, data = get(0)
        if size < 0:
            break  # -1: the COPY ended (or failed: the result says which)
        append(data)
        held += size
        if held >= 1024 * 1024:
            yield b"".join(pending)
            pending.clear()
            held = 0
    result = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        raise errors.error_from_result(result, encoding=encoding)
    if pending:
        yield b"".join(pending)
    stats.server_rows = result.command_tuples


class _Cancelled(RedivisError):
    """on_kill while the query was being written."""


class SqlToRedivisOperator(RedivisResumableUploadOperator):
    """Run ``sql`` on a common.sql connection and load the result into a Redivis table.

    :param sql: the query (templated; a ``.sql`` file is read as a template). It must return rows.
    :param conn_id: any Airflow connection whose hook is a common.sql ``DbApiHook`` (postgres, sqlite,
        mysql, ...).
    :param table: ``owner.dataset:next.table`` (templated).
    :param parameters: bind parameters for the query (templated).
    :param mode: ``"staged"`` (default: a file first, resumable across tries and workers) or ``"streamed"``
        (straight into an upload of unknown size; a new try starts over).
    :param file_format: ``"csv"`` (default) or ``"parquet"`` (needs pyarrow).
    :param staging_path: where the staged file goes (templated): a local path, a URL (``s3://``...) or an
        ObjectStoragePath. Default: ``{tempdir}/airflow-redivis-staging/{dag_id}/{run_id}/{task_id}[.{map_index}].csv``
        on the worker, which a retry on another worker cannot see: give shared storage to resume across
        workers.
    :param keep_staged_file: keep the staged file (and its marker) after success.
    :param fetch_size: rows per ``fetchmany``; memory is about one batch.
    :param null_marker: how NULL is written in CSV: an empty unquoted field (default), or this text,
        which is then passed to Redivis as ``null_markers``.
    :param postgres_copy: for PostgreSQL and CSV, let the server write the CSV with
        ``COPY (sql) TO STDOUT`` (much faster). Default None: whenever the connection is PostgreSQL,
        the format CSV and there are no ``parameters``. See README for how its values are written.
    :param sql_hook_params: extra keyword arguments for the connection's hook.
    :param upload_name: the upload's name; default ``{task_id}[_{map_index}].{csv|parquet}`` (templated).

    Every other keyword is :class:`RedivisResumableUploadOperator`'s: ``if_exists``, ``redivis_conn_id``,
    ``wait_for_completion``, ``deferrable``, ``chunk_size``, ``checksum``, ``poll_interval``,
    ``wait_timeout``, ``schema``, ``metadata``, ``skip_bad_records``...
    """

    template_fields: Sequence[str] = tuple(
        dict.fromkeys(
            (*RedivisResumableUploadOperator.template_fields, "sql", "parameters", "staging_path", "conn_id")
        )
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "parameters": "json"}
    ui_color = "#5b8bb8"

    def __init__(
        self,
        *,
        sql: str,
        conn_id: str,
        table: str,
        parameters: Any = None,
        mode: str = "staged",
        file_format: str = "csv",
        staging_path: Any = None,
        keep_staged_file: bool = False,
        fetch_size: int = 10_000,
        null_marker: str | None = None,
        postgres_copy: bool | None = None,
        sql_hook_params: dict[str, Any] | None = None,
        upload_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "source" in kwargs:
            raise RedivisConfigError("SqlToRedivisOperator writes its own source: give sql, not source.")
        if mode not in MODES:
            raise RedivisConfigError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
        if file_format not in FILE_FORMATS:
            raise RedivisConfigError(
                f"file_format must be one of {', '.join(FILE_FORMATS)}; got {file_format!r}."
            )
        if isinstance(fetch_size, bool) or not isinstance(fetch_size, int) or fetch_size < 1:
            raise RedivisConfigError(f"fetch_size must be a positive number of rows; got {fetch_size!r}.")
        marker = validate_null_marker(null_marker)
        if marker and file_format != "csv":
            raise RedivisConfigError("null_marker applies to CSV only; Parquet has real NULLs.")
        if postgres_copy and file_format != "csv":
            raise RedivisConfigError(
                "postgres_copy writes CSV; it cannot be used with file_format='parquet'."
            )
        if file_format == "csv":
            kwargs.setdefault("delimiter", ",")
            kwargs.setdefault("has_header_row", True)
            kwargs.setdefault("quote_character", '"')
            if marker:
                kwargs.setdefault("null_markers", [marker])
        super().__init__(
            source=None,
            table=table,
            upload_name=upload_name,
            upload_type="delimited" if file_format == "csv" else "parquet",
            **kwargs,
        )
        chunk_size = self.chunk_size
        if mode == "streamed" and chunk_size is not None and chunk_size > MAX_UNKNOWN_TOTAL_REQUEST_SIZE:
            raise RedivisConfigError(
                f"chunk_size={chunk_size} is too large for mode='streamed': a request of unknown total is held "
                f"in memory, so it is at most {MAX_UNKNOWN_TOTAL_REQUEST_SIZE} bytes (32 MiB)."
            )
        self.sql = sql
        self.conn_id = conn_id
        self.parameters = parameters
        self.mode = mode
        self.file_format = file_format
        self.staging_path = staging_path
        self.keep_staged_file = keep_staged_file
        self.fetch_size = fetch_size
        self.null_marker = marker
        self.postgres_copy = postgres_copy
        self.sql_hook_params = sql_hook_params
        self._cancelled = False
        self._stream_session: Any = None

    # -- entry points ---------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            if not is_template(self.table):
                validate_table_reference(self.table)
            name = validate_upload_name(self.upload_name or self._default_upload_name(context))
            self.upload_name = name
            if self.mode == "streamed":
                return self._execute_streamed(context, name)
            return self._execute_staged(context)
        except RedivisError as exc:
            if is_final(exc):
                raise AirflowFailException(str(exc)) from exc
            raise

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        result = super().execute_complete(context, event)
        if self.mode == "staged":
            self._remove_staged(self._staged_path(context))
        return result

    def on_kill(self) -> None:
        self._cancelled = True
        if self._stream_session is not None:
            self._stream_session.cancel()
        super().on_kill()

    # -- the database ------------------------------------------------------------------------------

    def get_db_hook(self) -> Any:
        """The connection's hook, which must be a common.sql ``DbApiHook``."""
        try:
            from airflow.providers.common.sql.hooks.sql import DbApiHook
        except ImportError:
            raise RedivisConfigError(
                "SqlToRedivisOperator needs apache-airflow-providers-common-sql: "
                "pip install 'airflow-provider-redivis[sql]'."
            ) from None
        connection = BaseHook.get_connection(self.conn_id)
        hook = connection.get_hook(hook_params=self.sql_hook_params)
        if not isinstance(hook, DbApiHook):
            raise RedivisConfigError(
                f"Connection {self.conn_id!r} (type {connection.conn_type!r}) gives a {type(hook).__name__}, "
                "which is not a SQL database hook (common.sql DbApiHook). Give the conn_id of a SQL database "
                "connection: postgres, sqlite, mysql, snowflake, ..."
            )
        return hook

    @staticmethod
    def _driver(conn: Any) -> str:
        return type(conn).__module__.split(".")[0]

    def open_cursor(self, conn: Any) -> Any:
        """A cursor that fetches from the server in batches, where the driver needs asking for one.

        psycopg2 and psycopg (3) get a named, server-side cursor; MySQLdb an unbuffered SSCursor; other
        drivers their default cursor (sqlite3 reads lazily). Override for another driver.
        """
        driver = self._driver(conn)
        if driver in ("psycopg2", "psycopg"):
            cursor = conn.cursor(name=f"redivis_{uuid.uuid4().hex[:12]}")
            if driver == "psycopg2":
                cursor.itersize = self.fetch_size
            return cursor
        if driver == "MySQLdb":
            import MySQLdb.cursors

            return conn.cursor(MySQLdb.cursors.SSCursor)
        return conn.cursor()

    def _uses_copy(self, conn: Any) -> bool:
        if self.file_format != "csv":
            return False
        is_postgres = self._driver(conn) in ("psycopg2", "psycopg")
        if self.postgres_copy is None:
            return is_postgres and self.parameters is None
        if self.postgres_copy and not is_postgres:
            raise RedivisConfigError(
                f"postgres_copy=True needs a PostgreSQL connection; {self.conn_id!r} uses {self._driver(conn)}."
            )
        if self.postgres_copy and self.parameters is not None:
            raise RedivisConfigError(
                "postgres_copy=True cannot bind parameters (COPY takes none): render them into the query "
                "with Jinja, or set postgres_copy=False."
            )
        return bool(self.postgres_copy)

    def _query_text(self) -> str:
        if not isinstance(self.sql, str) or not self.sql.strip():
            raise RedivisConfigError(f"sql must be one non-empty query string; got {self.sql!r}.")
        return self.sql

    @contextlib.contextmanager
    def _rows(self, stats: EncodeStats) -> Iterator[Iterator[bytes]]:
        """Run the query; yield the encoded file as blocks. The first block is produced before this yields,
        so a query that fails, fails here, before anything exists in Redivis."""
        sql = self._query_text()
        db_hook = self.get_db_hook()
        conn = db_hook.get_conn()
        cursor = None
        try:
            if self._uses_copy(conn):
                blocks = self._copy_blocks(conn, sql, stats)
            else:
                cursor = self.open_cursor(conn)
                log.info(
                    "Running the query on %s (fetching %d rows at a time)", self.conn_id, self.fetch_size
                )
                if self.parameters is None:
                    cursor.execute(sql)
                else:
                    cursor.execute(sql, self.parameters)
                if self.file_format == "csv":
                    blocks = csv_blocks(
                        cursor, fetch_size=self.fetch_size, null_marker=self.null_marker, stats=stats
                    )
                else:
                    blocks = parquet_blocks(cursor, fetch_size=self.fetch_size, stats=stats)
            blocks = self._watched(blocks, stats)
            first = next(blocks, None)
            yield itertools.chain([] if first is None else [first], blocks)
        finally:
            with contextlib.suppress(Exception):
                if cursor is not None:
                    cursor.close()
            with contextlib.suppress(Exception):
                conn.rollback()  # a read; nothing to keep
            with contextlib.suppress(Exception):
                conn.close()

    def _copy_blocks(self, conn: Any, sql: str, stats: EncodeStats) -> Iterator[bytes]:
        query = sql.strip().rstrip(";").strip()
        marker = self.null_marker.replace("'", "''")
        copy_sql = f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true, NULL '{marker}')"
        log.info("Running the query on %s as COPY (...) TO STDOUT: PostgreSQL writes the CSV", self.conn_id)
        cursor = conn.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        if self._driver(conn) == "psycopg":
            return copy_csv_blocks(_psycopg_copy_chunks(conn, copy_sql, stats), stats)
        return self._psycopg2_copy_blocks(cursor, copy_sql, stats)

    def _psycopg2_copy_blocks(self, cursor: Any, copy_sql: str, stats: EncodeStats) -> Iterator[bytes]:
        """psycopg2's COPY pushes into a file: it runs in a thread and hands blocks over a small queue."""
        import queue
        import threading

        handoff: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
        stop = threading.Event()

        class _Writer:
            """psycopg2 writes one row per call: gather them, hand over about a MiB at a time."""

            def __init__(self) -> None:
                self.parts: list[bytes] = []
                self.held = 0

            def write(self, data: Any) -> int:
                if stop.is_set():
                    raise InterruptedError("the consumer stopped")
                self.parts.append(data.encode("utf-8") if isinstance(data, str) else bytes(data))
                self.held += len(data)
                if self.held >= 1024 * 1024:
                    self.flush()
                return len(data)

            def flush(self) -> None:
                if self.parts:
                    handoff.put(b"".join(self.parts))
                    self.parts, self.held = [], 0

        def run() -> None:
            try:
                writer = _Writer()
                cursor.copy_expert(copy_sql, writer, size=1024 * 1024)
                writer.flush()
                handoff.put(None)
            except BaseException as exc:
                handoff.put(exc)

        def chunks() -> Iterator[bytes]:
            thread = threading.Thread(target=run, name="redivis-pg-copy", daemon=True)
            thread.start()
            try:
                while True:
                    item = handoff.get()
                    if item is None:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                stop.set()
                with contextlib.suppress(queue.Empty):
                    while True:
                        handoff.get_nowait()
                thread.join(timeout=30)
            stats.server_rows = cursor.rowcount

        return copy_csv_blocks(chunks(), stats)

    def _watched(self, blocks: Iterator[bytes], stats: EncodeStats) -> Iterator[bytes]:
        """The blocks, with on_kill honoured and progress in the task log every 30 s."""
        started = last = time.monotonic()
        for block in blocks:
            if self._cancelled:
                raise _Cancelled("Stopped: the task was killed while the query's rows were being written.")
            now = time.monotonic()
            if now - last >= 30:
                last = now
                log.info(
                    "Written %d rows, %.1f MiB, in %.0f s", stats.rows, stats.bytes / 2**20, now - started
                )
            yield block

    # -- staged mode -------------------------------------------------------------------------------

    def _staged_path(self, context: Any) -> Any:
        """The staged file: a local Path, or an ObjectStoragePath for a URL."""
        target = self.staging_path
        if target is None or (isinstance(target, str) and not target.strip()):
            return default_staging_path(context, self.file_format)
        if isinstance(target, os.PathLike) and not hasattr(target, "fs"):
            return Path(os.fspath(target))
        if isinstance(target, str):
            text = target.strip()
            if "://" not in text or text.startswith("file://"):
                return Path(text.removeprefix("file://")).expanduser()
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            return ObjectStoragePath(text)
        return target  # an ObjectStoragePath

    @staticmethod
    def _sibling(path: Any, suffix: str) -> Any:
        return path.with_name(path.name + suffix)

    def _query_fingerprint(self) -> str:
        material = json.dumps(
            [self.sql, self.parameters, self.file_format, self.null_marker, self.postgres_copy],
            default=str,
            sort_keys=True,
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def _complete_staged(self, path: Any) -> dict[str, Any] | None:
        """The marker of a complete staged file of this query, or None (with the reason logged)."""
        marker_path = self._sibling(path, MARKER_SUFFIX)
        try:
            if not marker_path.exists():
                return None
            marker = json.loads(marker_path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("Writing the query's rows again: the staged file's marker cannot be read (%s)", exc)
            return None
        if not isinstance(marker, dict) or marker.get("query") != self._query_fingerprint():
            log.warning("Writing the query's rows again: the staged file %s is of another query", path)
            return None
        try:
            size = open_source(path).size
        except RedivisError as exc:
            log.warning("Writing the query's rows again: the staged file is unusable (%s)", exc)
            return None
        if size != marker.get("bytes"):
            log.warning(
                "Writing the query's rows again: the staged file has %d bytes, its marker says %s",
                size,
                marker.get("bytes"),
            )
            return None
        return marker

    def _stage(self, path: Any) -> dict[str, Any]:
        """Write the query's rows to a temporary name, rename it into place, then write the marker."""
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            with contextlib.suppress(Exception):
                path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._sibling(path, f".partial-{uuid.uuid4().hex[:8]}")
        stats = EncodeStats()
        started = time.monotonic()
        try:
            with self._rows(stats) as blocks, partial.open("wb") as out:
                for block in blocks:
                    out.write(block)
                if isinstance(path, Path):
                    out.flush()
                    os.fsync(out.fileno())
            if isinstance(path, Path):
                os.replace(partial, path)
            else:
                partial.rename(path)
        except BaseException:
            with contextlib.suppress(Exception):
                partial.unlink()
            raise
        marker = {
            "query": self._query_fingerprint(),
            "format": self.file_format,
            "rows": stats.rows,
            "bytes": stats.bytes,
            "columns": list(stats.columns),
            "has_quoted_newlines": stats.has_quoted_newlines,
            "written_at": datetime.now(timezone.utc).isoformat(),
        }
        self._write_marker(path, marker)
        seconds = time.monotonic() - started
        log.info(
            "Staged %d rows (%d bytes) at %s in %.1f s (%.0f rows/s)",
            stats.rows,
            stats.bytes,
            path,
            seconds,
            stats.rows / seconds if seconds > 0 else 0.0,
        )
        return marker

    def _write_marker(self, path: Any, marker: dict[str, Any]) -> None:
        marker_path = self._sibling(path, MARKER_SUFFIX)
        text = json.dumps(marker, sort_keys=True)
        if isinstance(path, Path):
            temporary = self._sibling(path, f"{MARKER_SUFFIX}.partial-{uuid.uuid4().hex[:8]}")
            temporary.write_text(text)
            os.replace(temporary, marker_path)
        else:
            marker_path.write_text(text)  # one object PUT: there or not

    def _remove_staged(self, path: Any) -> None:
        if self.keep_staged_file:
            log.info("Keeping the staged file %s (keep_staged_file=True)", path)
            return
        for victim in (self._sibling(path, MARKER_SUFFIX), path):
            try:
                victim.unlink()
            except FileNotFoundError:
                pass
            except Exception as exc:
                log.warning("Could not delete the staged file %s (%s)", victim, exc)
        log.info("Deleted the staged file %s", path)

    def _skip_early(self, context: Any) -> dict[str, Any] | None:
        """``if_exists="skip"`` with the upload there and no transfer of ours under way: skip the query too."""
        if self.if_exists != "skip" or checkpoint_store_for(context).load() is not None:
            return None
        table = validate_table_reference(self.table)
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        if not hook.upload_exists(table, str(self.upload_name)):
            return None
        log.info(
            "Upload %r exists in %s; if_exists='skip' runs no query and sends nothing",
            self.upload_name,
            table,
        )
        return summarize_upload(hook.get_upload(table, str(self.upload_name)))

    def _execute_staged(self, context: Any) -> dict[str, Any]:
        skipped = self._skip_early(context)
        if skipped is not None:
            return skipped
        path = self._staged_path(context)
        marker = self._complete_staged(path)
        if marker is not None:
            log.info(
                "Reusing the complete staged file %s (%d rows, %d bytes, written %s): the query is not run again",
                path,
                marker.get("rows"),
                marker.get("bytes"),
                marker.get("written_at"),
            )
        else:
            marker = self._stage(path)
        context["ti"].xcom_push(key=XCOM_ROWS, value=marker.get("rows"))
        if (
            self.file_format == "csv"
            and marker.get("has_quoted_newlines")
            and self.has_quoted_newlines is None
        ):
            self.has_quoted_newlines = True
        self.source = path
        result = super().execute(context)
        self._remove_staged(path)
        return result

    # -- streamed mode -----------------------------------------------------------------------------

    def _default_upload_name(self, context: Any) -> str:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        suffix = f"_{map_index}" if map_index is not None and map_index >= 0 else ""
        return f"{ti.task_id}{suffix}.{self.file_format}"

    def _if_exists(self, hook: RedivisHook, table: str, name: str) -> dict[str, Any] | None:
        if not hook.upload_exists(table, name):
            return None
        if self.if_exists == "skip":
            log.info("Upload %r exists in %s; if_exists='skip' sends nothing", name, table)
            return hook.get_upload(table, name)
        if self.if_exists == "replace":
            log.info("Upload %r exists in %s; if_exists='replace' deletes it first", name, table)
            hook.delete_upload(hook.get_upload(table, name)["uri"])
            return None
        raise RedivisConflictError(
            409,
            f"table {table} already has an upload named {name!r}",
            hint="Set if_exists='replace' to overwrite it, 'skip' to keep it, or choose another upload_name.",
        )

    def _temp_session(self, hook: RedivisHook, table: str, name: str) -> tuple[str, str]:
        """A temp upload and its resumable session of unknown size: (temp upload id, session URL).

        ``POST /tables/{t}/resumableUpload`` needs the size up front, so a stream uses the temp-upload
        path the official client uses: ``POST /tables/{t}/tempUploads`` (its ``size`` is required; 0
        says nothing is known), then ``POST {url}`` with ``x-goog-resumable: start`` and no
        ``x-upload-content-length``: Cloud Storage's session of unknown total.
        """
        created = hook._call(
            "POST",
            f"{hook._table_path(table)}/tempUploads",
            json_body={"tempUploads": [{"size": 0, "name": name, "resumable": True}]},
            send_json=True,
        )
        results = created.get("results") or []
        if not results or not isinstance(results[0], dict) or not results[0].get("url"):
            raise RedivisError(f"Redivis answered the temp-upload request without a URL: {created!r:.200}")
        temp = results[0]
        if temp.get("resumable") is False:
            raise RedivisError(
                "Redivis made the temp upload non-resumable, so it cannot take a stream of unknown size: use "
                "mode='staged'."
            )
        url = str(temp["url"])
        mask_session_url(url)

        def start() -> str:
            response = hook.session.post(
                url,
                headers={"x-goog-resumable": "start", "Content-Length": "0"},
                timeout=hook.timeout,
                allow_redirects=False,
            )
            try:
                if response.status_code >= 400:
                    from airflow_provider_redivis.hooks.api_errors import api_error_from_response

                    raise api_error_from_response(
                        response, method="POST", path="<temp upload>", secrets=(hook.settings.token,)
                    )
                location = response.headers.get("Location")
                if not location:
                    raise RedivisError("Starting the temp upload's resumable session returned no Location.")
                return location
            finally:
                response.close()

        session_url = tenacity.Retrying(**hook.retry_policy.retry_args(is_retryable_error))(start)
        mask_session_url(session_url)
        log.info(
            "Created temp upload %s and a session of unknown size (%s)",
            temp.get("id"),
            redact_session_url(session_url),
        )
        return str(temp["id"]), session_url

    def _execute_streamed(self, context: Any, name: str) -> dict[str, Any]:
        table = validate_table_reference(self.table)
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        stats = EncodeStats()
        started = time.monotonic()
        with self._rows(stats) as blocks:
            # The query ran and its first rows are here: only now does anything happen in Redivis.
            existing = self._if_exists(hook, table, name)
            if existing is not None:
                return summarize_upload(existing)
            temp_id, session_url = self._temp_session(hook, table, name)
            reader = StreamReader(blocks)
            self._stream_session = hook.resumable_session(
                session_url, None, chunk_size=self.chunk_size, checksum=self.checksum
            )
            last_log = [time.monotonic()]

            def progress(held: int, _total: int | None) -> None:
                reader.release(held)  # the server holds these: they are never sent again
                now = time.monotonic()
                if now - last_log[0] >= 30:
                    last_log[0] = now
                    log.info("Streamed %.1f MiB (%d rows) so far", held / 2**20, stats.rows)

            try:
                self._stream_session.upload(reader, 0, on_progress=progress)
            finally:
                self._stream_session = None
                reader.close()
        seconds = time.monotonic() - started
        log.info(
            "Streamed %d rows (%d bytes) in %.1f s (%.0f rows/s); the upload server holds them all, proven; "
            "peak buffered %.1f MiB",
            stats.rows,
            stats.bytes,
            seconds,
            stats.rows / seconds if seconds > 0 else 0.0,
            reader.peak_buffered / 2**20,
        )
        context["ti"].xcom_push(key=XCOM_ROWS, value=stats.rows)
        if self.file_format == "csv" and stats.has_quoted_newlines and self.has_quoted_newlines is None:
            self.has_quoted_newlines = True
        upload = self._create_streamed_upload(hook, table, name, temp_id)
        # The upload operator's own wait (in the worker or deferred) and conclusion (links, verdict).
        return self._finish(context["ti"], hook, checkpoint_store_for(context), upload)

    def _create_streamed_upload(
        self, hook: RedivisHook, table: str, name: str, temp_id: str
    ) -> dict[str, Any]:
        try:
            upload = hook.create_upload(
                table,
                name=name,
                upload_type=self.upload_type,
                temp_upload_id=temp_id,
                delimiter=self.delimiter,
                has_header_row=self.has_header_row,
                skip_bad_records=self.skip_bad_records,
                has_quoted_newlines=self.has_quoted_newlines,
                allow_jagged_rows=self.allow_jagged_rows,
                quote_character=self.quote_character,
                escape_character=self.escape_character,
                null_markers=self.null_markers,
                schema=self.schema,
                metadata=self.metadata,
            )
        except (requests.ConnectionError, requests.Timeout):
            try:
                upload = hook.get_upload(table, name)
            except RedivisNotFoundError:
                raise
            log.info("The answer to creating upload %r was lost, but it exists; attaching", name)
        log.info("Created upload %s", upload.get("uri"))
        return upload
