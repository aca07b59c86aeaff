"""Streamed mode's dealings with Redivis: a session of unknown size, and the upload at the end.

The bytes themselves go through the hook's :class:`~airflow_provider_redivis.resumable.ResumableSession`
reading a :class:`~airflow_provider_redivis.transfers.stream_reader.StreamReader`; the operator drives
that (it must be able to cancel it from ``on_kill``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_redivis.errors import RedivisError, RedivisNotFoundError
from airflow_provider_redivis.upload_protocol import redact_session_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_redivis.hooks.redivis import RedivisHook

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
    table: str,
    name: str,
    temp_id: str,
    upload_type: str | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Create the upload from the temp upload; a lost answer is looked up and attached to."""
    try:
        upload = hook.create_upload(
            table, name=name, upload_type=upload_type, temp_upload_id=temp_id, **options
        )
    except (requests.ConnectionError, requests.Timeout):
        try:
            upload = hook.get_upload(table, name)
        except RedivisNotFoundError:
            raise
        log.info("The answer to creating upload %r was lost, but it exists; attaching", name)
    log.info("Created upload %s", upload.get("uri"))
    return upload
