"""Streamed mode's dealings with Redivis: ``if_exists``, a session of unknown size, the upload at the end.

The bytes themselves go through the hook's :class:`~airflow_provider_redivis.resumable.ResumableSession`
reading a :class:`~airflow_provider_redivis.transfers.stream_reader.StreamReader`; the operator drives
that (it must be able to cancel it from ``on_kill``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests
import tenacity

from airflow_provider_redivis.errors import RedivisConflictError, RedivisError, RedivisNotFoundError
from airflow_provider_redivis.hooks.auth import mask_session_url
from airflow_provider_redivis.retry import is_retryable_error
from airflow_provider_redivis.upload_protocol import redact_session_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_redivis.hooks.redivis import RedivisHook

log = logging.getLogger(__name__)


def resolve_existing(hook: RedivisHook, table: str, name: str, if_exists: str) -> dict[str, Any] | None:
    """Apply ``if_exists`` to an upload already under ``name``: the upload to report when skipping."""
    if not hook.upload_exists(table, name):
        return None
    if if_exists == "skip":
        log.info("Upload %r exists in %s; if_exists='skip' sends nothing", name, table)
        return hook.get_upload(table, name)
    if if_exists == "replace":
        log.info("Upload %r exists in %s; if_exists='replace' deletes it first", name, table)
        hook.delete_upload(hook.get_upload(table, name)["uri"])
        return None
    raise RedivisConflictError(
        409,
        f"table {table} already has an upload named {name!r}",
        hint="Set if_exists='replace' to overwrite it, 'skip' to keep it, or choose another upload_name.",
    )


def temp_session(hook: RedivisHook, table: str, name: str) -> tuple[str, str]:
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
