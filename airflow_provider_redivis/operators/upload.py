"""RedivisResumableUploadOperator: a file into a Redivis table, resuming across tries and workers."""

from __future__ import annotations

import logging
import os
import posixpath
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, TaskDeferred, conf

from airflow_provider_redivis.assets import asset_for_table
from airflow_provider_redivis.checkpoint_store import VariableCheckpointStore, checkpoint_store_for
from airflow_provider_redivis.engine.job import UploadJob
from airflow_provider_redivis.engine.options import UploadSpec, check_upload_arguments, infer_upload_type
from airflow_provider_redivis.engine.run_sharing import RunSharing
from airflow_provider_redivis.engine.sources import open_source
from airflow_provider_redivis.engine.status import (
    DEFERRED_POLL_INTERVAL,
    UploadOutcome,
    UploadTarget,
    summarize_upload,
    upload_failure,
    upload_outcome,
)
from airflow_provider_redivis.errors import RedivisAPIError, RedivisConfigError, RedivisError, is_final
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.links import (
    XCOM_TABLE_URL,
    XCOM_UPLOAD_URL,
    RedivisTableLink,
    RedivisUploadLink,
)
from airflow_provider_redivis.references import is_template, validate_table_reference

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_redivis.checkpoint_store import CheckpointStore
    from airflow_provider_redivis.engine.names import NamesSeen
    from airflow_provider_redivis.engine.sources import UploadSource

log = logging.getLogger(__name__)

XCOM_SESSION_ID = "redivis_session_id"
XCOM_OFFSET = "redivis_offset"


class RedivisResumableUploadOperator(BaseOperator):
    """Stream a file into a Redivis table through a resumable upload that survives retries.

    After every chunk the server acknowledges, a checkpoint (session, offset, source fingerprint)
    is saved where the next try can find it, on whatever worker it runs. A new try with the same
    source and a live session asks the server for its offset and continues from there.

    :param source: local path, ``file://``, ``s3://``, ``gs://``... URL, or an ObjectStoragePath
        every worker can read. Templated.
    :param table: ``owner.dataset:next.table``. Templated.
    :param upload_name: the upload's name in the table; defaults to the source's file name. Templated.
    :param upload_type: one of Redivis's upload types; inferred from the file name when omitted.
    :param chunk_size: bytes per request, a multiple of 256 KiB. Default None: each request is sized from
        the measured rate to about 8 s on the wire (see docs/internals.md, "Request sizes"); set it behind a proxy
        that caps request bodies.
    :param checksum: how the stored object is proven to be the source: ``"auto"`` (default; crc32c),
        ``"crc32c"``, ``"md5"``, or None to accept a server that reports no hash (the size is still checked;
        bytes an earlier try sent are still proven by crc32c, so a resume never splices two versions).
    :param if_exists: what to do when the table already has an upload of that name:
        ``fail`` (default), ``replace`` (delete it first) or ``skip`` (return it, send nothing).
        An upload under the name that this task's session did not create is never adopted. Mapped
        instances answer it from one listing of the table per DAG run (see docs/operators.md, "Requests").
    :param transport: ``"resumable_upload"`` (default; ``POST /tables/{t}/resumableUpload``) or
        ``"temp_upload"`` (``tempUploads``, the path of the official client since 0.14). Same engine,
        checkpoint and resume; the checkpoint records which.
    :param wait_for_completion: wait until Redivis has processed the upload.
    :param deferrable: wait in the triggerer rather than a worker slot.
    :param poll_interval: seconds between status checks while waiting. Deferred: the first interval of a
        backoff (default 10 s); the deferred waits on one table share their checks. In the worker: a steady
        pace, never less than Airflow's ``[redivis] min_poll_interval`` (30 s, also the default), so that
        the waits of many tasks stay inside Redivis's request budget.
    :param wait_timeout: seconds to wait for processing before failing.

    The table's ``redivis://owner/dataset/table`` asset is declared as an outlet unless ``outlets``
    is given, so a downstream DAG can be scheduled on the table being loaded.
    """

    template_fields: Sequence[str] = (
        "source",
        "table",
        "upload_name",
        "delimiter",
        "quote_character",
        "escape_character",
        "null_markers",
        "schema",
        "metadata",
    )
    ui_color = "#2d6fa4"
    operator_extra_links = (RedivisTableLink(), RedivisUploadLink())

    def __init__(
        self,
        *,
        source: Any,
        table: str,
        upload_name: str | None = None,
        upload_type: str | None = None,
        chunk_size: int | None = None,
        checksum: str | None = "auto",
        redivis_conn_id: str = RedivisHook.default_conn_name,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | None = None,
        wait_timeout: float = 24 * 3600.0,
        if_exists: str = "fail",
        transport: str = "resumable_upload",
        delimiter: str | None = None,
        has_header_row: bool | None = None,
        skip_bad_records: bool | None = None,
        has_quoted_newlines: bool | None = None,
        allow_jagged_rows: bool | None = None,
        quote_character: str | None = None,
        escape_character: str | None = None,
        null_markers: list[str] | None = None,
        schema: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # Every argument is checked now, at DAG parse, unless it is a template; the rendered values are
        # checked again, by the same function, when the task runs.
        options = {
            "delimiter": delimiter,
            "has_header_row": has_header_row,
            "skip_bad_records": skip_bad_records,
            "has_quoted_newlines": has_quoted_newlines,
            "allow_jagged_rows": allow_jagged_rows,
            "quote_character": quote_character,
            "escape_character": escape_character,
            "null_markers": null_markers,
            "schema": schema,
            "metadata": metadata,
        }
        check_upload_arguments(
            table=None if is_template(table) else table,
            name=None if upload_name is None or is_template(upload_name) else upload_name,
            upload_type=upload_type,
            transport=transport,
            if_exists=if_exists,
            chunk_size=chunk_size,
            checksum=checksum,
            options={key: value for key, value in options.items() if not is_template(value)},
        )
        if (poll_interval is not None and poll_interval <= 0) or wait_timeout <= 0:
            raise RedivisConfigError("poll_interval and wait_timeout must be positive numbers of seconds.")
        if not is_template(table) and "outlets" not in kwargs:
            # Downstream DAGs can be scheduled on the table being loaded.
            kwargs["outlets"] = [asset_for_table(table)]
        super().__init__(**kwargs)
        self.source = source
        self.table = table
        self.upload_name = upload_name
        self.upload_type = upload_type
        self.chunk_size = chunk_size
        self.checksum = checksum
        self.redivis_conn_id = redivis_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.if_exists = if_exists
        self.transport = transport
        self.delimiter = delimiter
        self.has_header_row = has_header_row
        self.skip_bad_records = skip_bad_records
        self.has_quoted_newlines = has_quoted_newlines
        self.allow_jagged_rows = allow_jagged_rows
        self.quote_character = quote_character
        self.escape_character = escape_character
        self.null_markers = null_markers
        self.schema = schema
        self.metadata = metadata
        self._job: UploadJob | None = None
        #: The buttons' URLs this try published, by XCom key: Airflow 3's links answer from them (links.py).
        self.redivis_links: dict[str, str] = {}
        #: The finished upload, for OpenLineage.
        self._upload: dict[str, Any] | None = None
        #: A look at the upload's name this try took before the job (the SQL transfer's), for if_exists.
        self._own_look: NamesSeen | None = None
        # The checkpoint goes once Airflow has the task's success: a failure after execute returns (the
        # result's XCom, the API server away) leaves it, so the retry attaches to the upload by its uri.
        given: Any = self.on_success_callback
        callbacks = list(given) if isinstance(given, (list, tuple)) else [] if given is None else [given]
        self.on_success_callback = [*callbacks, _delete_checkpoint_after_success]

    # -- entry points ---------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        self.redivis_links = {}  # what this try learns; a try that learns nothing shows no button
        store = checkpoint_store_for(context)
        try:
            return self._execute(context, store)
        except RedivisError as exc:
            final = is_final(exc)
            if _kept_for_a_new_token(exc, store):
                log.info(
                    "Kept the upload checkpoint: once the connection's token is fixed, clearing the task resumes "
                    "this upload"
                )
            elif final or (not store.keep_after_last_try and _is_last_try(context, self)):
                _forget(store, "the task ends here" if final else "this was the task's last try")
            if final:
                raise AirflowFailException(str(exc)) from exc
            raise
        except TaskDeferred:
            raise  # the wait goes on in the triggerer; execute_complete decides
        except BaseException:
            if not store.keep_after_last_try and _is_last_try(context, self):
                _forget(store, "this was the task's last try")
            raise

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resumes after a deferred wait: the trigger's event decides."""
        store = checkpoint_store_for(context)
        upload = event.get("upload") or {}
        if upload:
            self._publish_links(context["ti"], RedivisHook(redivis_conn_id=self.redivis_conn_id), upload)
        if event.get("status") == "success" and upload_outcome(upload) is UploadOutcome.COMPLETED:
            self._upload = upload
            return summarize_upload(upload)  # the checkpoint goes with the task's success callback
        if upload and upload_outcome(upload) is UploadOutcome.FAILED:
            store.delete()
            raise AirflowFailException(str(upload_failure(upload)))
        if not store.keep_after_last_try and _is_last_try(context, self):
            _forget(store, "this was the task's last try")
        raise RedivisError(f"Waiting for the Redivis upload ended without success: {event.get('message')}")

    def on_kill(self) -> None:
        if self._job is not None:
            log.info("Stopping the upload; the checkpoint stays and the next try resumes from it")
            self._job.cancel()

    # -- the work -------------------------------------------------------------------------------

    def _execute(self, context: Any, store: CheckpointStore) -> dict[str, Any]:
        name = self.upload_name or _default_name(self.source)
        spec = UploadSpec(
            table=self.table,
            name=name,
            upload_type=self.upload_type or infer_upload_type(name),
            transport=self.transport,
            if_exists=self.if_exists,
            chunk_size=self.chunk_size,
            checksum=self.checksum,
            options=self._upload_options(),
        )
        source = self._open_source()
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        self._announce_store(store)
        ti = context["ti"]
        keys = {"session_id": XCOM_SESSION_ID, "offset": XCOM_OFFSET}
        sharing = RunSharing(ti, spec.table)
        sharing.claim(spec.name)
        self._job = UploadJob(
            hook,
            store,
            spec,
            source,
            report=lambda key, value: ti.xcom_push(key=keys[key], value=value),
            known_names=lambda: sharing.known_names(hook, spec.name, self._own_look),
        )
        try:
            result = self._job.run()
        finally:
            self._job = None
        self._publish_links(ti, hook, result.upload)  # now, so a wait that fails keeps the buttons
        if result.skipped:
            self._upload = result.upload
            return summarize_upload(result.upload)
        ti.xcom_push(key=XCOM_OFFSET, value=source.size)
        return self._finish(ti, hook, store, result.upload)

    def _announce_store(self, store: CheckpointStore) -> None:
        """Say where the checkpoint lives; below Airflow 3.3, sweep the Variables killed tries left."""
        log.info("Checkpoints for this upload are kept in %s", store.description)
        if isinstance(store, VariableCheckpointStore):
            store.sweep()

    def _open_source(self) -> UploadSource:
        """The file to send, checked; a subclass that wrote it hands over the one it checked against its record."""
        return open_source(self.source)

    def _publish_links(self, ti: Any, hook: RedivisHook, upload: dict[str, Any]) -> None:
        """The URLs behind the task's "Redivis upload" and "Redivis table" buttons, as Redivis returned them,
        on this operator and to XCom, as soon as the upload is known (each once per try; the table's is read
        once per DAG run by the task's mapped instances: :mod:`run_sharing`)."""
        links = self.redivis_links
        url = upload.get("url")
        if isinstance(url, str) and links.get(XCOM_UPLOAD_URL) != url:
            links[XCOM_UPLOAD_URL] = url
            ti.xcom_push(key=XCOM_UPLOAD_URL, value=url)
        if XCOM_TABLE_URL in links:
            return
        try:
            table_url = RunSharing(ti, validate_table_reference(self.table)).table_url(hook)
        except (RedivisError, requests.RequestException) as exc:
            log.warning("No link to the table: reading it from Redivis failed (%s)", type(exc).__name__)
            return
        if isinstance(table_url, str):
            links[XCOM_TABLE_URL] = table_url
            ti.xcom_push(key=XCOM_TABLE_URL, value=table_url)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the source in, the table out, with the upload's row count, size and schema."""
        from airflow_provider_redivis.lineage import operator_lineage

        return operator_lineage(self.source, self.table, self._upload or {})

    def _upload_options(self) -> dict[str, Any]:
        return {
            "delimiter": self.delimiter,
            "has_header_row": self.has_header_row,
            "skip_bad_records": self.skip_bad_records,
            "has_quoted_newlines": self.has_quoted_newlines,
            "allow_jagged_rows": self.allow_jagged_rows,
            "quote_character": self.quote_character,
            "escape_character": self.escape_character,
            "null_markers": self.null_markers,
            "schema": self.schema,
            "metadata": self.metadata,
        }

    def _finish(
        self, ti: Any, hook: RedivisHook, store: CheckpointStore, upload: dict[str, Any]
    ) -> dict[str, Any]:
        if not self.wait_for_completion or upload_outcome(upload) is not UploadOutcome.PENDING:
            return self._conclude(ti, hook, store, upload)
        if self.deferrable:
            from airflow_provider_redivis.triggers.upload import RedivisUploadTrigger

            first = DEFERRED_POLL_INTERVAL if self.poll_interval is None else self.poll_interval

            self.defer(
                trigger=RedivisUploadTrigger(
                    upload_uri=upload["uri"],
                    redivis_conn_id=self.redivis_conn_id,
                    poll_interval=first,
                    timeout=self.wait_timeout,
                ),
                method_name="execute_complete",
            )
        target = UploadTarget(upload_uri=upload["uri"], upload_name=upload.get("name"))
        upload = hook.wait_for_upload(target, poll_interval=self.poll_interval, timeout=self.wait_timeout)
        return self._conclude(ti, hook, store, upload)

    def _conclude(
        self, ti: Any, hook: RedivisHook, store: CheckpointStore, upload: dict[str, Any]
    ) -> dict[str, Any]:
        self._publish_links(ti, hook, upload)
        if upload_outcome(upload) is UploadOutcome.FAILED:
            store.delete()
            raise upload_failure(upload)
        self._upload = upload
        return summarize_upload(upload)  # the checkpoint goes with the task's success callback


def _is_last_try(context: Any, task: BaseOperator) -> bool:
    """No retry follows this try: Airflow's own rule (``retries`` set and ``try_number <= max_tries``)."""
    ti = context["ti"]
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    if not task.retries:
        return True
    if not isinstance(try_number, int) or not isinstance(max_tries, int):
        return False  # cannot tell: keep it, the sweep removes it once stale
    return try_number > max_tries


def _kept_for_a_new_token(exc: RedivisError, store: CheckpointStore) -> bool:
    """A 401/403 (a revoked token) ends the task, but a fixed token resumes the upload: keep the checkpoint.

    Only in a store that expires it by itself: a Variable would stay forever on Airflow 3.0-3.2.
    """
    return isinstance(exc, RedivisAPIError) and exc.status in (401, 403) and store.keep_after_last_try


def _delete_checkpoint_after_success(context: Any) -> None:
    """``on_success_callback``: the task's success is Airflow's now; nothing needs the checkpoint."""
    _forget(checkpoint_store_for(context), "the task succeeded")


def _forget(store: CheckpointStore, why: str) -> None:
    try:
        store.delete()
        log.info("Deleted the upload checkpoint: %s", why)
    except Exception as exc:  # the task's own error matters more; a sweep removes it later
        log.warning(
            "Could not delete the upload checkpoint (%s); a later upload task sweeps it", type(exc).__name__
        )


def _default_name(source: object) -> str:
    text = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    return posixpath.basename(text.rstrip("/")) or text
