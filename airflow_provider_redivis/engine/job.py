"""One upload, from checkpoint to created upload: plain Python, no Airflow import.

:class:`UploadJob` owns the order of things: load the checkpoint, open (or resume) the session on the
chosen transport, send the bytes, then create the upload once or attach to the one this session
already created. The operator wires Airflow to it (context, XCom, deferral, failing for good).

An upload is attached to only when this session can be shown to have created it
(:mod:`~airflow_provider_redivis.engine.ownership` says what ties it, and what shows it is another's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.engine.background_writer import CLOSE_TIMEOUT, BackgroundWriter
from airflow_provider_redivis.engine.checkpoint import (
    CheckpointUnreadableError,
    UploadCheckpoint,
    UploadPhase,
)
from airflow_provider_redivis.engine.creation import VISIBILITY_WAIT, CreateOnce, apply_if_exists
from airflow_provider_redivis.engine.progress import Progress
from airflow_provider_redivis.engine.protocol import redact_session_url
from airflow_provider_redivis.engine.sealing import SessionUrlSeal
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisError,
    ResumableSessionExpiredError,
    UploadIntegrityError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_redivis.checkpoint_store import CheckpointStore
    from airflow_provider_redivis.engine.names import NamesSeen
    from airflow_provider_redivis.engine.options import UploadSpec
    from airflow_provider_redivis.engine.resumable import ResumableSession
    from airflow_provider_redivis.engine.sources import UploadSource
    from airflow_provider_redivis.hooks.redivis import RedivisHook

log = logging.getLogger(__name__)

HUNG_SAVE = (
    " The bytes sent are with Redivis, and a resume trusts what Redivis holds, not the checkpoint: the next try "
    "asks Redivis and goes on from there. If this repeats, check that Airflow's metadata database (on Airflow 3, "
    "its API server) answers."
)


@dataclass
class JobResult:
    upload: dict[str, Any]
    #: True when an existing upload was returned under if_exists='skip' (nothing was sent).
    skipped: bool = False


class UploadJob:
    """Checkpoint → session → transfer → attach-or-create, for one source and one task instance.

    :param report: called with ``("session_id", id)`` and ``("offset", n)`` as the transfer advances
        (the operator pushes them to XCom); later calls come from the checkpoint writer's thread.
    :param known_names: called only when ``if_exists`` is to be applied: a recent look at the table's
        names that may answer it without asking Redivis (see :func:`apply_if_exists`), or None.
    """

    def __init__(
        self,
        hook: RedivisHook,
        store: CheckpointStore,
        spec: UploadSpec,
        source: UploadSource,
        *,
        report: Callable[[str, Any], None] | None = None,
        known_names: Callable[[], NamesSeen | None] | None = None,
        visibility_wait: float = VISIBILITY_WAIT,
        save_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.hook = hook
        self.store = store
        self.spec = spec
        self.source = source
        self.seal = SessionUrlSeal(hook.settings.token)
        self._report = report or (lambda _key, _value: None)
        self._known_names = known_names or (lambda: None)
        self.visibility_wait = visibility_wait
        #: How long the end of a transfer waits for the checkpoint save in flight.
        self.save_timeout = save_timeout
        self._session: ResumableSession | None = None
        self.create_once = CreateOnce(hook, spec, self.save, self.forget, visibility_wait=visibility_wait)

    # -- the store ------------------------------------------------------------------------------

    def save(self, checkpoint: UploadCheckpoint) -> None:
        self.store.save(checkpoint.to_json(self.seal))

    def forget(self) -> None:
        """Delete the checkpoint: the upload is done, or the next try must start clean."""
        self.store.delete()

    def cancel(self) -> None:
        if self._session is not None:
            self._session.cancel()

    # -- the job --------------------------------------------------------------------------------

    def run(self) -> JobResult:
        checkpoint = self.usable_checkpoint()
        if checkpoint is not None and (
            checkpoint.phase in (UploadPhase.CREATING, UploadPhase.CREATED)
            # Proven by the try that sent them; without the URL the session cannot be asked again.
            or (checkpoint.phase is UploadPhase.TRANSFERRED and checkpoint.session_url is None)
        ):
            try:
                return JobResult(self.create_once(checkpoint))
            except ResumableSessionExpiredError as exc:
                log.warning("Starting a new upload session from byte 0: %s", exc)
                checkpoint = None
        if checkpoint is None:
            existing = self.resolve_existing()
            if existing is not None:
                self.forget()
                return JobResult(existing, skipped=True)
        checkpoint = self.transfer(checkpoint)
        return JobResult(self.create_once(checkpoint))

    def usable_checkpoint(self) -> UploadCheckpoint | None:
        """The stored checkpoint if this try may resume from it; otherwise None, with the reason logged."""
        raw = self.store.load()
        if raw is None:
            return None
        try:
            checkpoint = UploadCheckpoint.from_json(raw, self.seal)
        except CheckpointUnreadableError as exc:
            log.warning("Starting a new upload session from byte 0: the checkpoint cannot be read (%s)", exc)
            return None
        spec = self.spec
        if (checkpoint.table, checkpoint.upload_name, checkpoint.transport) != (
            spec.table,
            spec.name,
            spec.transport,
        ):
            log.warning(
                "Starting a new upload session from byte 0: the checkpoint is for %s/%s over %s, this try uploads "
                "%s/%s over %s",
                checkpoint.table,
                checkpoint.upload_name,
                checkpoint.transport,
                spec.table,
                spec.name,
                spec.transport,
            )
            return None
        if checkpoint.fingerprint != self.source.fingerprint():
            log.warning(
                "Starting a new upload session from byte 0: the source changed since the last try "
                "(size %d → %d); resuming would splice two versions of the file",
                checkpoint.fingerprint.size,
                self.source.size,
            )
            return None
        if checkpoint.session_url is None and checkpoint.phase is UploadPhase.TRANSFERRING:
            log.warning(
                "Starting a new upload session from byte 0: the URL of session %s, the only way to resume it, was "
                "sealed with another token (the connection's token changed) and cannot be opened",
                checkpoint.session_id,
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

    def resolve_existing(self) -> dict[str, Any] | None:
        """Apply ``if_exists`` before anything is sent; return the upload to report when skipping."""
        spec = self.spec
        return apply_if_exists(self.hook, spec.table, spec.name, spec.if_exists, self._known_names())

    # -- sessions and bytes ---------------------------------------------------------------------

    def new_session(self) -> UploadCheckpoint:
        spec, size = self.spec, self.source.size
        if spec.transport == "temp_upload":
            temp = self.hook.create_temp_upload(spec.table, size, spec.name)
            session_id, url = str(temp["id"]), self.hook.start_temp_upload_session(str(temp["url"]), size)
        else:
            created = self.hook.create_resumable_upload(spec.table, size)
            session_id, url = str(created["id"]), str(created["url"])
        checkpoint = UploadCheckpoint(
            table=spec.table,
            upload_name=spec.name,
            session_id=session_id,
            session_url=url,
            total_size=size,
            fingerprint=self.source.fingerprint(),
            transport=spec.transport,
        )
        self.save(checkpoint)  # before the first byte
        log.info(
            "Created Redivis upload session %s (%s, %s) for %d bytes of %s",
            session_id,
            spec.transport,
            redact_session_url(url),
            size,
            self.source.display,
        )
        return checkpoint

    def session_for(self, checkpoint: UploadCheckpoint) -> ResumableSession:
        if checkpoint.session_url is None:
            raise RedivisError(f"session {checkpoint.session_id}'s URL is not known: it cannot take bytes")
        return self.hook.resumable_session(
            checkpoint.session_url,
            checkpoint.total_size,
            chunk_size=self.spec.chunk_size,
            checksum=self.spec.checksum,
        )

    def transfer(self, checkpoint: UploadCheckpoint | None) -> UploadCheckpoint:
        for attempt in (1, 2):
            if checkpoint is None:
                checkpoint, offset = self.new_session(), 0
            else:
                resumed = self._resume_offset(checkpoint)
                if resumed is None:
                    checkpoint = None
                    continue
                offset = resumed
            self._report("session_id", checkpoint.session_id)
            self._report("offset", offset)
            try:
                current, md5 = self.send(checkpoint, offset)
            except UploadIntegrityError:
                self.forget()  # that session's object is wrong: the next try starts a new one
                raise
            except ResumableSessionExpiredError:
                if attempt == 2:
                    raise
                log.warning(
                    "Starting a new upload session from byte 0: session %s expired during the transfer",
                    checkpoint.session_id,
                )
                self.forget()
                checkpoint = None
                continue
            done = current.advanced(
                offset=checkpoint.total_size, phase=UploadPhase.TRANSFERRED, stored_md5=md5
            )
            self.save(done)
            log.info("All %d bytes are with Redivis, proven to be the source's", done.total_size)
            return done
        raise ResumableSessionExpiredError("Two upload sessions in a row expired; run the task again.")

    def _resume_offset(self, checkpoint: UploadCheckpoint) -> int | None:
        """Where the session stands; None when it cannot be this source's (a new session starts)."""
        reason = None
        try:
            status = self.session_for(checkpoint).query_status()
            if status.offset > checkpoint.total_size:
                reason = f"holds {status.offset} bytes, more than the source's {checkpoint.total_size}"
        except ResumableSessionExpiredError:
            reason = "is gone on the server (expired or cancelled)"
        except RedivisAPIError as exc:
            if not 400 <= exc.status < 500:
                raise
            reason = f"refuses this source's size ({exc.status}): it is not this source's session"
        if reason is not None:
            log.warning(
                "Starting a new upload session from byte 0: session %s %s", checkpoint.session_id, reason
            )
            self.forget()
            return None
        # A complete session only lost its last answer: nothing is left to send.
        offset = checkpoint.total_size if status.complete else status.offset
        log.info(
            "Resuming Redivis upload session %s at byte %d of %d",
            checkpoint.session_id,
            offset,
            checkpoint.total_size,
        )
        return offset

    def send(self, checkpoint: UploadCheckpoint, offset: int) -> tuple[UploadCheckpoint, str | None]:
        """Send from ``offset`` to the end; acknowledged offsets are saved on the writer's thread, never in the way."""
        progress = Progress(checkpoint.total_size, offset)
        current = checkpoint

        def save(update: UploadCheckpoint) -> None:
            self.save(update)
            self._report("offset", update.offset)

        with BackgroundWriter(
            save, "upload checkpoint", close_timeout=self.save_timeout, advice=HUNG_SAVE
        ) as writer:

            def acknowledged(held: int, _total: int | None) -> None:
                nonlocal current
                if held == current.offset:
                    return
                current = current.advanced(offset=held)
                writer.submit(current)
                progress.update(held)

            self._session = self.session_for(checkpoint)
            try:
                with self.source.open() as reader:
                    stored = self._session.upload(
                        reader, offset, on_progress=acknowledged, check_source=self.source.check_unchanged
                    )
            finally:
                self._session = None
        return current, stored.hashes.get("md5")
