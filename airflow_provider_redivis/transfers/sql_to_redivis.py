"""SqlToRedivisOperator: the result of a SQL query, from any common.sql connection, into a Redivis table.

Two modes:

- ``staged`` (default): the rows are written to a file (``staging_path``), completed by an atomic rename
  and a marker naming the task instance and the query, then sent by :class:`RedivisResumableUploadOperator`'s
  own engine and checkpoint. A retry of the same task instance that finds its complete file does not run
  the query again, and resumes the upload where it stopped; any other run's file is never sent.
- ``streamed``: the rows go straight into an upload session of unknown size, with at most one request
  of bytes in memory. A network failure inside the try resumes. A new try whose stream finished
  creates the upload from it or attaches to the one it made (checkpointed: temp upload id, phase,
  upload uri), without the query; one whose stream never finished starts over (query, new session).

This module holds the operator: its options, the order of each mode's steps and the query's rows as
blocks. The database side is in ``sql_database.py``, the staged file and its marker in
``sql_staging.py``, streamed mode's stream, checkpoint and upload in ``sql_streaming.py``, rows to CSV in
``sql_encoding.py``, to Parquet in ``sql_parquet.py``, and the stream's file view in ``stream_reader.py``;
none of them imports this one.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_redivis.engine.creation import apply_if_exists, existing_upload
from airflow_provider_redivis.engine.names import absent_name
from airflow_provider_redivis.engine.options import UploadSpec, check_upload_options, validate_upload_name
from airflow_provider_redivis.engine.protocol import MAX_UNKNOWN_TOTAL_REQUEST_SIZE
from airflow_provider_redivis.engine.run_sharing import RunSharing
from airflow_provider_redivis.engine.status import summarize_upload
from airflow_provider_redivis.errors import RedivisConfigError, RedivisError, is_final
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator
from airflow_provider_redivis.references import is_template, validate_table_reference
from airflow_provider_redivis.transfers.sql_database import (
    batched_cursor,
    copy_blocks,
    query_text,
    sql_hook,
    uses_copy,
)
from airflow_provider_redivis.transfers.sql_encoding import (
    EncodeStats,
    csv_blocks,
    validate_null_marker,
)
from airflow_provider_redivis.transfers.sql_parquet import parquet_blocks
from airflow_provider_redivis.transfers.sql_staging import (
    StagedFile,
    complete_staged,
    query_fingerprint,
    remove_staged,
    stage,
    staged_path,
    task_instance_of,
)
from airflow_provider_redivis.transfers.sql_streaming import (
    RowStream,
    StreamCheckpoints,
    create_streamed_upload,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from airflow_provider_redivis.checkpoint_store import CheckpointStore
    from airflow_provider_redivis.engine.sources import UploadSource

log = logging.getLogger(__name__)

MODES = ("staged", "streamed")
FILE_FORMATS = ("csv", "parquet")
XCOM_ROWS = "redivis_sql_rows"


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
        (straight into an upload of unknown size; a new try starts over unless the stream had finished).
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
        the format CSV and there are no ``parameters``. See docs/sql-transfer.md for how its values are written.
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
        self._stream: RowStream | None = None
        self._staged: StagedFile | None = None

    # -- entry points ---------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            if not is_template(self.table):
                validate_table_reference(self.table)
            check_upload_options(self._upload_options())  # rendered, before the query runs or a byte goes
            self.upload_name = validate_upload_name(self.upload_name or self._default_upload_name(context))
        except RedivisError as exc:
            if is_final(exc):
                raise AirflowFailException(str(exc)) from exc
            raise
        # The upload operator's execute: its checkpoint store, and what a failure does to it.
        return super().execute(context)

    def _execute(self, context: Any, store: CheckpointStore) -> dict[str, Any]:
        if self.mode == "streamed":
            return self._execute_streamed(context, store)
        return self._execute_staged(context, store)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        result = super().execute_complete(context, event)
        if self.mode == "staged":
            remove_staged(self._staged_path(context), self.keep_staged_file, task_instance_of(context))
        return result

    def on_kill(self) -> None:
        self._cancelled = True
        if self._stream is not None:
            self._stream.cancel()
        super().on_kill()

    # -- the database ------------------------------------------------------------------------------

    def get_db_hook(self) -> Any:
        """The connection's hook, which must be a common.sql ``DbApiHook``."""
        return sql_hook(self.conn_id, self.sql_hook_params)

    def open_cursor(self, conn: Any) -> Any:
        """A cursor that fetches from the server in batches, where the driver needs asking for one.

        psycopg2 and psycopg (3) get a named, server-side cursor; MySQLdb an unbuffered SSCursor; other
        drivers their default cursor (sqlite3 reads lazily). Override for another driver.
        """
        return batched_cursor(conn, self.fetch_size)

    @contextlib.contextmanager
    def _rows(self, stats: EncodeStats) -> Iterator[Iterator[bytes]]:
        """Run the query; yield the encoded file as blocks. The first block is produced before this yields,
        so a query that fails, fails here, before anything exists in Redivis."""
        sql = query_text(self.sql)
        db_hook = self.get_db_hook()
        conn = db_hook.get_conn()
        cursor = None
        try:
            if uses_copy(
                conn,
                file_format=self.file_format,
                postgres_copy=self.postgres_copy,
                parameters=self.parameters,
                conn_id=self.conn_id,
            ):
                blocks = copy_blocks(conn, sql, self.null_marker, stats, self.conn_id)
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

    def _note_quoted_newlines(self, seen: bool) -> None:
        """A CSV field held a line break: the upload says so, unless the user decided."""
        if self.file_format == "csv" and seen and self.has_quoted_newlines is None:
            self.has_quoted_newlines = True

    # -- staged mode -------------------------------------------------------------------------------

    def _staged_path(self, context: Any) -> Any:
        """The staged file: a local Path, or an ObjectStoragePath for a URL."""
        return staged_path(self.staging_path, context, self.file_format)

    def _query_fingerprint(self) -> str:
        return query_fingerprint(
            self.sql, self.parameters, self.file_format, self.null_marker, self.postgres_copy
        )

    def _skip_early(self, store: CheckpointStore) -> dict[str, Any] | None:
        """``if_exists="skip"`` with the upload there and no transfer of ours under way: skip the query too.

        A name found absent answers the upload's own ``if_exists`` while that look is fresh (a query done
        within ``engine.names.MAX_AGE``); after a longer query, the upload asks again.
        """
        if self.if_exists != "skip" or store.load() is not None:
            return None
        table, name = validate_table_reference(self.table), str(self.upload_name)
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        at = time.time()
        upload = existing_upload(hook, table, name)
        if upload is None:
            self._own_look = absent_name(table, name, at)
            return None
        log.info("Upload %r exists in %s; if_exists='skip' runs no query and sends nothing", name, table)
        return summarize_upload(upload)

    def _execute_staged(self, context: Any, store: CheckpointStore) -> dict[str, Any]:
        skipped = self._skip_early(store)
        if skipped is not None:
            return skipped
        path = self._staged_path(context)
        owner = task_instance_of(context)
        staged = complete_staged(path, self._query_fingerprint(), owner) or stage(
            path, self._rows, self._query_fingerprint(), self.file_format, owner
        )
        context["ti"].xcom_push(key=XCOM_ROWS, value=staged.marker.get("rows"))
        self._note_quoted_newlines(bool(staged.marker.get("has_quoted_newlines")))
        self.source = path
        self._staged = staged
        result = super()._execute(context, store)
        remove_staged(path, self.keep_staged_file, owner)
        return result

    def _open_source(self) -> UploadSource:
        """The staged file, as checked against its marker: the engine sends those bytes or none."""
        if self._staged is None:
            return super()._open_source()
        return self._staged.source

    # -- streamed mode -----------------------------------------------------------------------------

    def _default_upload_name(self, context: Any) -> str:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        suffix = f"_{map_index}" if map_index is not None and map_index >= 0 else ""
        return f"{ti.task_id}{suffix}.{self.file_format}"

    def _execute_streamed(self, context: Any, store: CheckpointStore) -> dict[str, Any]:
        table, name = validate_table_reference(self.table), str(self.upload_name)
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        self._announce_store(store)
        checkpoints = StreamCheckpoints(store, table, name, self._query_fingerprint())
        finished = checkpoints.finished_stream()
        if finished is None:
            stream = RowStream(hook, checkpoints, chunk_size=self.chunk_size, checksum=self.checksum)
            stats = EncodeStats()
            with self._rows(stats) as blocks:
                # The query ran and its first rows are here: only now does anything happen in Redivis.
                sharing = RunSharing(context["ti"], table)
                sharing.claim(name)
                known = sharing.known_names(hook, name)
                existing = apply_if_exists(hook, table, name, self.if_exists, known)
                if existing is not None:
                    return summarize_upload(existing)
                self._stream = stream
                try:
                    finished = stream.send(blocks, stats)
                finally:
                    self._stream = None
        checkpoint, record = finished
        context["ti"].xcom_push(key=XCOM_ROWS, value=record.rows)
        self._note_quoted_newlines(record.has_quoted_newlines)
        spec = UploadSpec(
            table=table,
            name=name,
            upload_type=self.upload_type,
            transport="temp_upload",
            if_exists=self.if_exists,
            chunk_size=self.chunk_size,
            checksum=self.checksum,
            options=self._upload_options(),
        )
        upload = create_streamed_upload(hook, spec, checkpoints, checkpoint, record)
        # The upload operator's own wait (in the worker or deferred) and conclusion (links, verdict).
        return self._finish(context["ti"], hook, store, upload)
