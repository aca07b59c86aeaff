"""Create the upload once, or attach to the one this session created. Plain Python, no Airflow import."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_redivis.engine.checkpoint import UploadPhase
from airflow_provider_redivis.engine.ownership import (
    already_used,
    answers_expired,
    collision_hint,
    refusal_of,
    unproven_of,
    used_by_of,
)
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisConflictError,
    RedivisError,
    RedivisNotFoundError,
    ResumableSessionExpiredError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_redivis.engine.checkpoint import UploadCheckpoint
    from airflow_provider_redivis.engine.names import NamesSeen
    from airflow_provider_redivis.engine.options import UploadSpec
    from airflow_provider_redivis.hooks.redivis import RedivisHook

log = logging.getLogger("airflow_provider_redivis.engine.job")

#: How long an upload Redivis says exists may take to show under its name.
VISIBILITY_WAIT = 30.0
#: Creation requests one try sends at most (the first, and one after each lost answer).
MAX_CREATE_POSTS = 3


def apply_if_exists(
    hook: RedivisHook, table: str, name: str, if_exists: str, known: NamesSeen | None = None
) -> dict[str, Any] | None:
    """``if_exists`` for an upload already under ``name``, before anything is sent.

    :param known: a recent look at the table's names (:mod:`~airflow_provider_redivis.engine.names`);
        when it says the name was absent, Redivis is not asked again. Anything else is asked.
    :returns: the existing upload to report under ``skip``; None when nothing is there (or ``replace``
        deleted it). Under ``fail`` a :class:`RedivisConflictError` says what to do.
    """
    if known is not None and known.says_absent(name):
        log.info(
            "No upload named %r in %s, by %s: if_exists has nothing to act on",
            name,
            table,
            known.describe(),
        )
        return None
    upload = existing_upload(hook, table, name)
    if upload is None:
        return None
    if if_exists == "skip":
        log.info("Upload %r exists in %s; if_exists='skip' sends nothing", name, table)
        return upload
    if if_exists == "replace":
        log.info("Upload %r exists in %s; if_exists='replace' deletes it first", name, table)
        hook.delete_upload(upload["uri"])
        return None
    raise RedivisConflictError(
        409, f"table {table} already has an upload named {name!r}", hint=collision_hint(name)
    )


def existing_upload(hook: RedivisHook, table: str, name: str) -> dict[str, Any] | None:
    """The upload named ``name``, or None on a 404 (no such upload, or no such table: the session's request
    then fails for the table, before any byte is sent)."""
    try:
        return hook.get_upload(table, name)
    except RedivisNotFoundError:
        return None


class CreateOnce:
    """``POST /tables/{t}/uploads`` for a transferred session, attaching instead where it already happened.

    :param save: stores a checkpoint (the job's, sealed); :param forget: deletes it.
    """

    def __init__(
        self,
        hook: RedivisHook,
        spec: UploadSpec,
        save: Callable[[UploadCheckpoint], None],
        forget: Callable[[], None],
        *,
        visibility_wait: float = VISIBILITY_WAIT,
    ) -> None:
        self.hook = hook
        self.spec = spec
        self._save = save
        self._forget = forget
        self.visibility_wait = visibility_wait

    def __call__(self, checkpoint: UploadCheckpoint) -> dict[str, Any]:
        """Create the upload once; attach only to an upload this session provably created.

        A try whose predecessor (or its own earlier request) may have created the upload asks again
        rather than looking by name first: Redivis refuses a second upload of one session with
        "already used by upload N", the strongest proof there is that the upload is this session's.
        """
        if checkpoint.phase is UploadPhase.CREATED and checkpoint.upload_uri:
            log.info("Upload %s was created by an earlier try; attaching to it", checkpoint.upload_uri)
            try:
                return self.hook.get_upload_by_uri(checkpoint.upload_uri)
            except RedivisNotFoundError:
                raise self._gone(
                    f"Upload {checkpoint.upload_uri}, which an earlier try created, is not in Redivis"
                ) from None
        # A creation request of this session may have reached Redivis before (its answer lost).
        may_exist = checkpoint.phase is UploadPhase.CREATING
        creating = checkpoint.advanced(
            phase=UploadPhase.CREATING, creating_since=checkpoint.creating_since or datetime.now(timezone.utc)
        )
        self._save(creating)
        for _ in range(MAX_CREATE_POSTS):
            try:
                upload = self._post(creating)
            except (requests.ConnectionError, requests.Timeout):
                # It may have been created: asking again is safe, Redivis refuses a second upload of a session.
                log.warning("The answer to creating upload %r was lost; asking again", creating.upload_name)
                may_exist = True
                continue
            except RedivisAPIError as exc:
                used_by = used_by_of(exc)
                if used_by is not None or already_used(exc):
                    # "This session's upload already exists": find it, giving it time to show.
                    found = self._await_visible(creating)
                    if found is None:
                        made = f"upload {used_by}" if used_by else "an upload"
                        raise self._gone(
                            f"Redivis says this session made {made}, but no upload named {creating.upload_name!r} "
                            f"showed in table {creating.table} within {self.visibility_wait:.0f} s"
                        ) from None
                    return self._attach(
                        creating, found, f"Redivis says this session's upload exists ({exc.message})", used_by
                    )
                if answers_expired(exc):
                    return self._after_expiry(creating, may_exist, exc.message)
                if exc.status == 409:
                    # Our own earlier request can hold the name only if one was sent: else it is another's.
                    holder = self._lookup(creating) if may_exist else None
                    if holder is not None:
                        return self._attach(creating, holder, "an earlier request of this session created it")
                    raise self._collision(creating) from None
                raise
            self._save(creating.advanced(phase=UploadPhase.CREATED, upload_uri=upload["uri"]))
            log.info("Created upload %s", upload.get("uri"))
            return upload
        raise RedivisError(
            f"Creating upload {creating.upload_name!r} lost its answer {MAX_CREATE_POSTS} times; the next try asks "
            "again, and attaches if it was created."
        )

    def _post(self, checkpoint: UploadCheckpoint) -> dict[str, Any]:
        temp = checkpoint.transport == "temp_upload"
        return self.hook.create_upload(
            checkpoint.table,
            name=checkpoint.upload_name,
            upload_type=self.spec.upload_type,
            resumable_upload_id=None if temp else checkpoint.session_id,
            temp_upload_id=checkpoint.session_id if temp else None,
            **self.spec.options,
        )

    def _lookup(self, checkpoint: UploadCheckpoint) -> dict[str, Any] | None:
        return existing_upload(self.hook, checkpoint.table, checkpoint.upload_name)

    def _await_visible(self, checkpoint: UploadCheckpoint) -> dict[str, Any] | None:
        """The upload under the checkpoint's name, given up to ``visibility_wait`` to show; None if it does not."""
        deadline = time.monotonic() + self.visibility_wait
        pause = 0.5
        while True:
            found = self._lookup(checkpoint)
            if found is not None:
                return found
            if time.monotonic() + pause > deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def _after_expiry(self, checkpoint: UploadCheckpoint, may_exist: bool, answer: str) -> dict[str, Any]:
        """The session expired: attach to its upload if an earlier request made one, else its bytes go again."""
        found = self._await_visible(checkpoint) if may_exist else None
        if found is not None:
            return self._attach(
                checkpoint, found, "an earlier request of this session created it before the session expired"
            )
        self._forget()
        raise ResumableSessionExpiredError(
            f"session {checkpoint.session_id} expired before an upload was created from it (Redivis: {answer}); its "
            "bytes go again through a new session (the next try sends them if this one does not)"
        )

    def _attach(
        self, checkpoint: UploadCheckpoint, upload: dict[str, Any], why: str, used_by: str | None = None
    ) -> dict[str, Any]:
        refusal = refusal_of(checkpoint, upload, used_by)
        if refusal is not None:
            raise self._collision(checkpoint, refusal)
        missing = unproven_of(checkpoint, upload, used_by)
        if missing is not None:
            # Not adopted, and not called another's either: the checkpoint stays for the next try to ask again.
            raise RedivisError(
                f"Table {checkpoint.table} has an upload named {checkpoint.upload_name!r}, but nothing ties it to this "
                f"task's session ({missing}); it was left as it is and not adopted. The next try asks Redivis "
                "again. If this persists, another task may have loaded a file of that name: "
                + collision_hint(checkpoint.upload_name)
            )
        log.info(
            "Upload %r (%s) is this session's: %s; attaching", checkpoint.upload_name, upload.get("uri"), why
        )
        self._save(checkpoint.advanced(phase=UploadPhase.CREATED, upload_uri=upload["uri"]))
        return upload

    def _gone(self, what: str) -> RedivisError:
        """The upload the checkpoint stands for is not in Redivis (deleted?): end the checkpoint, start clean."""
        self._forget()
        return RedivisError(
            f"{what} (was it deleted?). The upload checkpoint was dropped: the next try sends the file again "
            "through a new session."
        )

    def _collision(self, checkpoint: UploadCheckpoint, refusal: str | None = None) -> RedivisConflictError:
        self._forget()  # never resume into someone else's upload: the next try starts clean
        reason = f" ({refusal})" if refusal else ""
        return RedivisConflictError(
            409,
            f"table {checkpoint.table} already has an upload named {checkpoint.upload_name!r} that this task did not "
            f"create{reason}; it was left as it is and nothing was created",
            hint=collision_hint(checkpoint.upload_name),
        )
