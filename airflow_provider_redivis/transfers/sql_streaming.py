"""Streamed mode's dealings with Redivis: a session of unknown size, the upload at the end, and the
checkpoint a retry needs.

The bytes go through the hook's :class:`~airflow_provider_redivis.engine.resumable.ResumableSession` reading a
:class:`~airflow_provider_redivis.transfers.stream_reader.StreamReader`; :class:`RowStream` drives that
(the operator cancels it from ``on_kill``).

A stream cannot be resumed by a new try (its rows would have to come again byte for byte), but the
upload made from it can be: the checkpoint, in the upload operator's store, holds the temp upload id,
the phase, the upload's uri once made, the query's fingerprint, and the row count and line-break flag
the upload is created with. Never the session URL (no retry sends to it), so the store holds no
credential. A retry whose stream finished (transferred, creating, created) runs no query: it creates
the upload from its temp upload once, or attaches to the one it made, then waits. One whose stream
never finished runs the query again into a new temp upload; the old one is never made into an upload.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, cast

from airflow_provider_redivis.engine.checkpoint import (
    CheckpointUnreadableError,
    UploadCheckpoint,
    UploadPhase,
)
from airflow_provider_redivis.engine.creation import CreateOnce
from airflow_provider_redivis.engine.protocol import redact_session_url
from airflow_provider_redivis.engine.sources import SourceFingerprint
from airflow_provider_redivis.errors import RedivisError
from airflow_provider_redivis.transfers.stream_reader import StreamReader

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_redivis.checkpoint_store import CheckpointStore
    from airflow_provider_redivis.engine.options import UploadSpec
    from airflow_provider_redivis.engine.resumable import ResumableSession
    from airflow_provider_redivis.hooks.redivis import RedivisHook
    from airflow_provider_redivis.transfers.sql_encoding import EncodeStats

log = logging.getLogger(__name__)

#: The checkpoint's key for what the stream was (the rest is an :class:`UploadCheckpoint`).
STREAM_KEY = "stream"
#: Phases in which the stream is complete on the server: a retry goes on from there without the query.
_FINISHED = (UploadPhase.TRANSFERRED, UploadPhase.CREATING, UploadPhase.CREATED)


@dataclass(frozen=True)
class StreamRecord:
    """What the stream was: which query, and what the upload needs to know of its rows."""

    query: str
    rows: int | None = None
    has_quoted_newlines: bool = False


class StreamCheckpoints:
    """The stream's checkpoint in the task instance's store (the one the upload operator uses)."""

    def __init__(self, store: CheckpointStore, table: str, name: str, query: str) -> None:
        self.store = store
        self.table = table
        self.name = name
        self.query = query

    def save(self, checkpoint: UploadCheckpoint, record: StreamRecord) -> None:
        data = checkpoint.advanced(session_url="").to_json()  # no retry sends to it: not stored
        data[STREAM_KEY] = {
            "query": record.query,
            "rows": record.rows,
            "has_quoted_newlines": record.has_quoted_newlines,
        }
        self.store.save(data)

    def forget(self) -> None:
        self.store.delete()

    def finished_stream(self) -> tuple[UploadCheckpoint, StreamRecord] | None:
        """An earlier try's complete stream of this query into this upload, or None (the query runs).

        Any other checkpoint is deleted, with the reason logged: this try starts clean.
        """
        raw = self.store.load()
        if raw is None:
            return None
        reason = None
        try:
            checkpoint = UploadCheckpoint.from_json(raw)
            stream = raw.get(STREAM_KEY) if isinstance(raw, dict) else None
            if not isinstance(stream, dict):
                raise CheckpointUnreadableError("it is not a stream's")
            record = StreamRecord(
                query=str(stream.get("query")),
                rows=stream.get("rows"),
                has_quoted_newlines=bool(stream.get("has_quoted_newlines")),
            )
        except CheckpointUnreadableError as exc:
            reason = f"the checkpoint cannot be used ({exc})"
        else:
            if (checkpoint.table, checkpoint.upload_name) != (self.table, self.name):
                reason = f"the checkpoint is for {checkpoint.table}/{checkpoint.upload_name}"
            elif record.query != self.query:
                reason = "the checkpoint is of another query"
            elif checkpoint.phase not in _FINISHED:
                reason = (
                    f"the earlier try's stream into temp upload {checkpoint.session_id} never finished (it is "
                    "never made into an upload)"
                )
        if reason is not None:
            log.warning("Running the query into a new temp upload: %s", reason)
            self.forget()
            return None
        log.info(
            "The earlier try's stream of %s rows is with Redivis (temp upload %s, %s): the query is not run "
            "again",
            record.rows,
            checkpoint.session_id,
            checkpoint.phase.value,
        )
        return checkpoint, record


class RowStream:
    """The query's blocks into a new temp upload's session of unknown size, checkpointed before and after."""

    def __init__(
        self,
        hook: RedivisHook,
        checkpoints: StreamCheckpoints,
        *,
        chunk_size: int | None,
        checksum: str | None,
    ) -> None:
        self.hook = hook
        self.checkpoints = checkpoints
        self.chunk_size = chunk_size
        self.checksum = checksum
        self._started = time.monotonic()
        self._session: ResumableSession | None = None

    def cancel(self) -> None:
        if self._session is not None:
            self._session.cancel()

    def send(self, blocks: Iterator[bytes], stats: EncodeStats) -> tuple[UploadCheckpoint, StreamRecord]:
        """Stream every block; return the checkpoint of the complete stream, saved, and its record."""
        table, name, query = self.checkpoints.table, self.checkpoints.name, self.checkpoints.query
        session_started = datetime.now(timezone.utc)
        temp_id, session_url = temp_session(self.hook, table, name)
        checkpoint = UploadCheckpoint(
            table=table,
            upload_name=name,
            session_id=temp_id,
            session_url="",
            total_size=0,
            # A stream has no file to fingerprint: its size, once known, is what there is.
            fingerprint=SourceFingerprint(size=0, modified=None, edges_sha256=""),
            created_at=session_started,
            transport="temp_upload",
        )
        self.checkpoints.save(checkpoint, StreamRecord(query))
        reader = StreamReader(blocks)
        self._session = self.hook.resumable_session(
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
            # A RawIOBase the engine reads, seeks and tells on as it would a file.
            stored = self._session.upload(cast("IO[bytes]", reader), 0, on_progress=progress)
        finally:
            self._session = None
            reader.close()
        seconds = time.monotonic() - self._started
        log.info(
            "Streamed %d rows (%d bytes) in %.1f s (%.0f rows/s); the upload server holds them all, proven; "
            "peak buffered %.1f MiB",
            stats.rows,
            stats.bytes,
            seconds,
            stats.rows / seconds if seconds > 0 else 0.0,
            reader.peak_buffered / 2**20,
        )
        size = stored.size or 0
        done = checkpoint.advanced(
            total_size=size,
            offset=size,
            fingerprint=SourceFingerprint(size=size, modified=None, edges_sha256=""),
            phase=UploadPhase.TRANSFERRED,
            stored_md5=stored.hashes.get("md5"),
        )
        record = StreamRecord(query, stats.rows, stats.has_quoted_newlines)
        self.checkpoints.save(done, record)
        return done, record


def temp_session(hook: RedivisHook, table: str, name: str) -> tuple[str, str]:
    """A temp upload and its resumable session of unknown size: (temp upload id, session URL).

    ``POST /tables/{t}/resumableUpload`` needs the size up front, so a stream takes the temp-upload path
    the official client uses, with the size left unknown (see the hook's :meth:`create_temp_upload`).
    """
    temp = hook.create_temp_upload(table, None, name)
    if temp.get("resumable") is False:
        raise RedivisError(
            "Redivis made the temp upload non-resumable, so it cannot take a stream of unknown size: use "
            "mode='staged'."
        )
    session_url = hook.start_temp_upload_session(str(temp["url"]), None)
    log.info(
        "Created temp upload %s and a session of unknown size (%s)",
        temp.get("id"),
        redact_session_url(session_url),
    )
    return str(temp["id"]), session_url


def create_streamed_upload(
    hook: RedivisHook,
    spec: UploadSpec,
    checkpoints: StreamCheckpoints,
    checkpoint: UploadCheckpoint,
    record: StreamRecord,
) -> dict[str, Any]:
    """Create the upload from the stream's temp upload, once, as the file upload does (:class:`CreateOnce`).

    A lost answer is asked again, never looked up by name alone: Redivis refuses a second upload of one
    temp upload ("already used by upload N"), which ties the upload to this stream; an upload that merely
    holds the name (another task's) is refused, and nothing is adopted. Each phase is checkpointed, so
    a new try asks again, or attaches to the upload by its uri.
    """
    return CreateOnce(
        hook,
        spec,
        save=lambda update: checkpoints.save(update, record),
        forget=checkpoints.forget,
    )(checkpoint)
