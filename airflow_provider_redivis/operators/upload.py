"""RedivisResumableUploadOperator: a file into a Redivis table, resuming across tries and workers."""

from __future__ import annotations

import logging
import os
import posixpath
import time
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, conf

from airflow_provider_redivis.assets import asset_for_table
from airflow_provider_redivis.checkpoint import CheckpointUnreadableError, UploadCheckpoint, UploadPhase
from airflow_provider_redivis.checkpoint_store import BackgroundWriter, checkpoint_store_for
from airflow_provider_redivis.checksums import validate_checksum
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConfigError,
    RedivisConflictError,
    RedivisError,
    RedivisNotFoundError,
    ResumableSessionExpiredError,
    UploadIntegrityError,
    is_final,
)
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.references import is_template, validate_table_reference
from airflow_provider_redivis.sources import open_source
from airflow_provider_redivis.upload_options import (
    infer_upload_type,
    validate_upload_name,
    validate_upload_type,
)
from airflow_provider_redivis.upload_protocol import redact_session_url, validate_chunk_size
from airflow_provider_redivis.upload_status import (
    UploadOutcome,
    summarize_upload,
    upload_failure,
    upload_outcome,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_redivis.checkpoint_store import CheckpointStore
    from airflow_provider_redivis.resumable import ResumableSession
    from airflow_provider_redivis.sources import UploadSource

log = logging.getLogger(__name__)

XCOM_SESSION_ID = "redivis_session_id"
XCOM_OFFSET = "redivis_offset"
IF_EXISTS = ("fail", "replace", "skip")


class _Progress:
    """Task-log progress at a readable pace: about every 10 % or every 30 s."""

    def __init__(self, total: int, start: int) -> None:
        self.total = total
        self.start_offset = start
        self.started = time.monotonic()
        self.last_logged = self.started
        self.last_percent_step = start * 10 // total

    def update(self, offset: int) -> None:
        now = time.monotonic()
        step = offset * 10 // self.total
        if step == self.last_percent_step and now - self.last_logged < 30 and offset < self.total:
            return
        self.last_percent_step, self.last_logged = step, now
        elapsed = max(now - self.started, 1e-6)
        rate = (offset - self.start_offset) / elapsed
        eta = (self.total - offset) / rate if rate > 0 else float("inf")
        log.info(
            "Uploaded %.1f of %.1f MiB (%.0f%%) at %.1f MiB/s, ETA %s",
            offset / 2**20,
            self.total / 2**20,
            100 * offset / self.total,
            rate / 2**20,
            f"{eta:.0f} s" if eta != float("inf") else "unknown",
        )


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
        the measured rate to about 8 s on the wire (see README "Request sizes"); set it behind a proxy
        that caps request bodies.
    :param checksum: how the stored object is proven to be the source: ``"auto"`` (default; crc32c),
        ``"crc32c"``, ``"md5"``, or None to accept a server that reports no hash (the size is still checked).
    :param if_exists: what to do when the table already has an upload of that name:
        ``fail`` (default), ``replace`` (delete it first) or ``skip`` (return it, send nothing).
    :param wait_for_completion: wait until Redivis has processed the upload.
    :param deferrable: wait in the triggerer rather than a worker slot.
    :param poll_interval: seconds between status checks while waiting.
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
        poll_interval: float = 10.0,
        wait_timeout: float = 24 * 3600.0,
        if_exists: str = "fail",
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
        if not is_template(table):
            validate_table_reference(table)
            if "outlets" not in kwargs:
                # Downstream DAGs can be scheduled on the table being loaded.
                kwargs["outlets"] = [asset_for_table(table)]
        super().__init__(**kwargs)
        self.source = source
        self.table = table
        self.upload_name = upload_name
        self.upload_type = upload_type
        self.chunk_size = validate_chunk_size(chunk_size)
        self.checksum = validate_checksum(checksum)
        self.redivis_conn_id = redivis_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.if_exists = if_exists
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
        if if_exists not in IF_EXISTS:
            raise RedivisConfigError(f"if_exists must be one of {', '.join(IF_EXISTS)}; got {if_exists!r}.")
        validate_upload_type(upload_type)
        if poll_interval <= 0 or wait_timeout <= 0:
            raise RedivisConfigError("poll_interval and wait_timeout must be positive numbers of seconds.")
        if upload_name is not None and not is_template(upload_name):
            validate_upload_name(upload_name)
        self._session: ResumableSession | None = None

    # -- entry points ---------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            return self._execute(context)
        except RedivisError as exc:
            if is_final(exc):
                raise AirflowFailException(str(exc)) from exc
            raise

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resumes after a deferred wait: the trigger's event decides."""
        store = checkpoint_store_for(context)
        upload = event.get("upload") or {}
        if event.get("status") == "success" and upload_outcome(upload) is UploadOutcome.COMPLETED:
            store.delete()
            return summarize_upload(upload)
        if upload and upload_outcome(upload) is UploadOutcome.FAILED:
            store.delete()
            raise AirflowFailException(str(upload_failure(upload)))
        raise RedivisError(f"Waiting for the Redivis upload ended without success: {event.get('message')}")

    def on_kill(self) -> None:
        if self._session is not None:
            log.info("Stopping the upload; the checkpoint stays and the next try resumes from it")
            self._session.cancel()

    # -- the work -------------------------------------------------------------------------------

    def _execute(self, context: Any) -> dict[str, Any]:
        table = validate_table_reference(self.table)
        source = open_source(self.source)
        name = validate_upload_name(self.upload_name or _default_name(self.source))
        upload_type = validate_upload_type(self.upload_type) or infer_upload_type(name)
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        store = checkpoint_store_for(context)
        log.info("Checkpoints for this upload are kept in %s", store.description)
        checkpoint = self._usable_checkpoint(store, table, name, source)

        if checkpoint is not None and checkpoint.phase in (UploadPhase.CREATING, UploadPhase.CREATED):
            upload = self._attach_or_create(hook, store, checkpoint, upload_type)
        else:
            if checkpoint is None:
                existing = self._resolve_existing(hook, table, name)
                if existing is not None:
                    store.delete()
                    return summarize_upload(existing)
            checkpoint = self._transfer(context, hook, store, checkpoint, table, name, source)
            upload = self._attach_or_create(hook, store, checkpoint, upload_type)

        context["ti"].xcom_push(key=XCOM_OFFSET, value=checkpoint.total_size)
        return self._finish(context, hook, store, upload)

    def _usable_checkpoint(
        self, store: CheckpointStore, table: str, name: str, source: UploadSource
    ) -> UploadCheckpoint | None:
        """The stored checkpoint if this try may resume from it; otherwise None, with the reason logged."""
        raw = store.load()
        if raw is None:
            return None
        try:
            checkpoint = UploadCheckpoint.from_json(raw)
        except CheckpointUnreadableError as exc:
            log.warning("Starting a new upload session from byte 0: the checkpoint cannot be read (%s)", exc)
            return None
        if checkpoint.table != table or checkpoint.upload_name != name:
            log.warning(
                "Starting a new upload session from byte 0: the checkpoint is for %s/%s, this try uploads %s/%s",
                checkpoint.table,
                checkpoint.upload_name,
                table,
                name,
            )
            return None
        if checkpoint.fingerprint != source.fingerprint():
            log.warning(
                "Starting a new upload session from byte 0: the source changed since the last try "
                "(size %d → %d); resuming would splice two versions of the file",
                checkpoint.fingerprint.size,
                source.size,
            )
            return None
        if checkpoint.phase in (UploadPhase.CREATING, UploadPhase.CREATED):
            return checkpoint  # the bytes are with Redivis already: the session's age no longer matters
        if checkpoint.session_expired():
            log.warning(
                "Starting a new upload session from byte 0: session %s was created at %s and has expired",
                checkpoint.session_id,
                checkpoint.created_at.isoformat(),
            )
            return None
        return checkpoint

    def _resolve_existing(self, hook: RedivisHook, table: str, name: str) -> dict[str, Any] | None:
        """Apply ``if_exists`` before anything is sent; return the upload to report when skipping."""
        if not hook.upload_exists(table, name):
            return None
        if self.if_exists == "skip":
            upload = hook.get_upload(table, name)
            log.info("Upload %r exists in %s; if_exists='skip' sends nothing", name, table)
            return upload
        if self.if_exists == "replace":
            upload = hook.get_upload(table, name)
            log.info("Upload %r exists in %s; if_exists='replace' deletes it first", name, table)
            hook.delete_upload(upload["uri"])
            return None
        raise RedivisConflictError(
            409,
            f"table {table} already has an upload named {name!r}",
            hint="Set if_exists='replace' to overwrite it, 'skip' to keep it, or choose another upload_name.",
        )

    def _new_session(
        self, hook: RedivisHook, store: CheckpointStore, table: str, name: str, source: UploadSource
    ) -> UploadCheckpoint:
        created = hook.create_resumable_upload(table, source.size)
        checkpoint = UploadCheckpoint(
            table=table,
            upload_name=name,
            session_id=created["id"],
            session_url=created["url"],
            total_size=source.size,
            fingerprint=source.fingerprint(),
        )
        store.save(checkpoint.to_json())
        log.info(
            "Created Redivis upload session %s (%s) for %d bytes of %s",
            checkpoint.session_id,
            redact_session_url(checkpoint.session_url),
            source.size,
            source.display,
        )
        return checkpoint

    def _transfer(
        self,
        context: Any,
        hook: RedivisHook,
        store: CheckpointStore,
        checkpoint: UploadCheckpoint | None,
        table: str,
        name: str,
        source: UploadSource,
    ) -> UploadCheckpoint:
        ti = context["ti"]
        for attempt in (1, 2):
            if checkpoint is None:
                checkpoint = self._new_session(hook, store, table, name, source)
                offset = 0
            else:
                try:
                    status = self._session_for(hook, checkpoint).query_status()
                    reason = None
                    if status.offset > checkpoint.total_size:
                        reason = (
                            f"holds {status.offset} bytes, more than the source's {checkpoint.total_size}"
                        )
                except ResumableSessionExpiredError:
                    reason = "is gone on the server (expired or cancelled)"
                except RedivisAPIError as exc:
                    if not 400 <= exc.status < 500:
                        raise
                    reason = f"refuses this source's size ({exc.status}): it is not this source's session"
                if reason is not None:
                    log.warning(
                        "Starting a new upload session from byte 0: session %s %s",
                        checkpoint.session_id,
                        reason,
                    )
                    store.delete()
                    checkpoint = None
                    continue
                # A complete session only lost its last answer: nothing is left to send.
                offset = checkpoint.total_size if status.complete else status.offset
                log.info(
                    "Resuming Redivis upload session %s at byte %d of %d",
                    checkpoint.session_id,
                    offset,
                    checkpoint.total_size,
                )
            ti.xcom_push(key=XCOM_SESSION_ID, value=checkpoint.session_id)
            ti.xcom_push(key=XCOM_OFFSET, value=offset)
            try:
                current = self._send(ti, hook, store, checkpoint, offset, source)
            except UploadIntegrityError:
                store.delete()  # that session's object is wrong: the next try starts a new one
                raise
            except ResumableSessionExpiredError:
                if attempt == 2:
                    raise
                log.warning(
                    "Starting a new upload session from byte 0: session %s expired during the transfer",
                    checkpoint.session_id,
                )
                store.delete()
                checkpoint = None
                continue
            done = current.advanced(offset=checkpoint.total_size, phase=UploadPhase.TRANSFERRED)
            store.save(done.to_json())
            log.info("All %d bytes are with Redivis, proven to be the source's", done.total_size)
            return done
        raise ResumableSessionExpiredError("Two upload sessions in a row expired; run the task again.")

    def _send(
        self,
        ti: Any,
        hook: RedivisHook,
        store: CheckpointStore,
        checkpoint: UploadCheckpoint,
        offset: int,
        source: UploadSource,
    ) -> UploadCheckpoint:
        """Send from ``offset`` to the end; the offsets the server acknowledges are saved in the background.

        The session is in the checkpoint before the first byte; later saves (checkpoint and XCom) run on a
        thread of their own, so a slow metadata database never holds the transfer up.
        """
        progress = _Progress(checkpoint.total_size, offset)
        current = checkpoint

        def save(update: UploadCheckpoint) -> None:
            store.save(update.to_json())
            ti.xcom_push(key=XCOM_OFFSET, value=update.offset)

        with BackgroundWriter(save, "upload checkpoint") as writer:

            def acknowledged(held: int, _total: int | None) -> None:
                nonlocal current
                if held == current.offset:
                    return
                current = current.advanced(offset=held)
                writer.submit(current)
                progress.update(held)

            self._session = self._session_for(hook, checkpoint)
            try:
                with source.open() as reader:
                    self._session.upload(
                        reader, offset, on_progress=acknowledged, check_source=source.check_unchanged
                    )
            finally:
                self._session = None
        return current

    def _session_for(self, hook: RedivisHook, checkpoint: UploadCheckpoint) -> ResumableSession:
        return hook.resumable_session(
            checkpoint.session_url, checkpoint.total_size, chunk_size=self.chunk_size, checksum=self.checksum
        )

    def _attach_or_create(
        self, hook: RedivisHook, store: CheckpointStore, checkpoint: UploadCheckpoint, upload_type: str | None
    ) -> dict[str, Any]:
        """Create the upload once: a try that finds it created already (its answer was lost) attaches to it."""
        if checkpoint.phase is UploadPhase.CREATED and checkpoint.upload_uri:
            log.info("Upload %s was created by an earlier try; attaching to it", checkpoint.upload_uri)
            return hook.get_upload_by_uri(checkpoint.upload_uri)
        if checkpoint.phase is UploadPhase.CREATING:
            found = self._find_upload(hook, checkpoint)
            if found is not None:
                log.info(
                    "Upload %r was created by an earlier try whose answer was lost; attaching",
                    checkpoint.upload_name,
                )
                store.save(checkpoint.advanced(phase=UploadPhase.CREATED, upload_uri=found["uri"]).to_json())
                return found
        creating = checkpoint.advanced(phase=UploadPhase.CREATING)
        store.save(creating.to_json())
        try:
            upload = hook.create_upload(
                checkpoint.table,
                name=checkpoint.upload_name,
                upload_type=upload_type,
                resumable_upload_id=checkpoint.session_id,
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
            # The request may have reached Redivis: look before anyone posts again.
            found = self._find_upload(hook, checkpoint)
            if found is None:
                raise
            log.info(
                "The answer to creating upload %r was lost, but it exists; attaching", checkpoint.upload_name
            )
            upload = found
        store.save(creating.advanced(phase=UploadPhase.CREATED, upload_uri=upload["uri"]).to_json())
        log.info("Created upload %s", upload.get("uri"))
        return upload

    @staticmethod
    def _find_upload(hook: RedivisHook, checkpoint: UploadCheckpoint) -> dict[str, Any] | None:
        try:
            return hook.get_upload(checkpoint.table, checkpoint.upload_name)
        except RedivisNotFoundError:
            return None

    def _finish(
        self, context: Any, hook: RedivisHook, store: CheckpointStore, upload: dict[str, Any]
    ) -> dict[str, Any]:
        if not self.wait_for_completion or upload_outcome(upload) is not UploadOutcome.PENDING:
            return self._conclude(store, upload)
        if self.deferrable:
            from airflow_provider_redivis.triggers.upload import RedivisUploadTrigger

            self.defer(
                trigger=RedivisUploadTrigger(
                    upload_uri=upload["uri"],
                    redivis_conn_id=self.redivis_conn_id,
                    poll_interval=self.poll_interval,
                    timeout=self.wait_timeout,
                ),
                method_name="execute_complete",
            )
        deadline = time.monotonic() + self.wait_timeout
        while upload_outcome(upload) is UploadOutcome.PENDING:
            if time.monotonic() >= deadline:
                raise RedivisError(
                    f"Upload {upload.get('uri')} was still {upload.get('status')!r} after {self.wait_timeout:.0f} s. "
                    "It goes on in Redivis; raise wait_timeout or wait for it with RedivisUploadSensor."
                )
            time.sleep(self.poll_interval)
            upload = hook.get_upload_by_uri(upload["uri"])
        return self._conclude(store, upload)

    @staticmethod
    def _conclude(store: CheckpointStore, upload: dict[str, Any]) -> dict[str, Any]:
        store.delete()
        if upload_outcome(upload) is UploadOutcome.FAILED:
            raise upload_failure(upload)
        return summarize_upload(upload)


def _default_name(source: object) -> str:
    text = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    return posixpath.basename(text.rstrip("/")) or text
