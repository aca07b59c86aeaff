"""Streamed mode's dealings with Redivis: a session of unknown size, and the upload at the end.

The bytes themselves go through the hook's :class:`~airflow_provider_redivis.resumable.ResumableSession`
reading a :class:`~airflow_provider_redivis.transfers.stream_reader.StreamReader`; the operator drives
that (it must be able to cancel it from ``on_kill``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.checkpoint import UploadCheckpoint, UploadPhase
from airflow_provider_redivis.errors import RedivisError
from airflow_provider_redivis.sources import SourceFingerprint
from airflow_provider_redivis.upload_creation import CreateOnce
from airflow_provider_redivis.upload_protocol import redact_session_url

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_redivis.hooks.redivis import RedivisHook
    from airflow_provider_redivis.upload_options import UploadSpec
    from airflow_provider_redivis.upload_protocol import StoredObject

log = logging.getLogger(__name__)


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
    temp_id: str,
    session_url: str,
    stored: StoredObject,
    started: datetime,
) -> dict[str, Any]:
    """Create the upload from the stream's temp upload, once, as the file upload does (:class:`CreateOnce`).

    A lost answer is asked again, never looked up by name alone: Redivis refuses a second upload of one
    temp upload ("already used by upload N"), which ties the upload to this stream; an upload that merely
    holds the name (another task's) is refused, and nothing is adopted. The stream's "checkpoint" lives
    only for this call: a new try streams again anyway.
    """
    size = stored.size or 0
    checkpoint = UploadCheckpoint(
        table=spec.table,
        upload_name=spec.name,
        session_id=temp_id,
        session_url=session_url,
        total_size=size,
        # A stream has no file to fingerprint; nothing resumes from this checkpoint.
        fingerprint=SourceFingerprint(size=size, modified=None, edges_sha256=""),
        offset=size,
        phase=UploadPhase.TRANSFERRED,
        created_at=started,
        transport="temp_upload",
        stored_md5=stored.hashes.get("md5"),
    )
    return CreateOnce(hook, spec, save=lambda _checkpoint: None, forget=lambda: None)(checkpoint)
