"""Uploads: create, read, list, delete, and wait until Redivis has processed one."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.errors import (
    RedivisConfigError,
    RedivisError,
    RedivisNotFoundError,
    WaitTimeoutError,
)
from airflow_provider_redivis.hooks.base import RedivisHookBase
from airflow_provider_redivis.retry import is_refused_request
from airflow_provider_redivis.upload_options import check_upload_options
from airflow_provider_redivis.upload_status import (
    UploadCheck,
    UploadOutcome,
    UploadTarget,
    look,
    poll_intervals,
    timeout_message,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


def _camel_case(option: str) -> str:
    """``has_header_row`` → ``hasHeaderRow``: Redivis's name of an upload option."""
    first, *rest = option.split("_")
    return first + "".join(word.capitalize() for word in rest)


#: list_uploads pages; a server that keeps handing out page tokens must not keep us forever.
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 10_000


class UploadsAPI(RedivisHookBase):
    """The uploads of a table, and the one way to wait for one."""

    def get_table(self, table: str) -> dict[str, Any]:
        """The table.

        :param table: ``owner.dataset:version.table``.
        :returns: the table resource.
        """
        return self._call("GET", self._table_path(table))

    def create_upload(
        self,
        table: str,
        *,
        name: str,
        upload_type: str | None = None,
        resumable_upload_id: str | None = None,
        temp_upload_id: str | None = None,
        transfer_specification: Mapping[str, Any] | None = None,
        delimiter: str | None = None,
        has_header_row: bool | None = None,
        skip_bad_records: bool | None = None,
        has_quoted_newlines: bool | None = None,
        allow_jagged_rows: bool | None = None,
        quote_character: str | None = None,
        escape_character: str | None = None,
        null_markers: list[str] | None = None,
        schema: list[dict[str, Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create the upload (``POST /tables/{table}/uploads``) and return its resource.

        Not idempotent: retried only when Redivis answered 429/503 (it refused the request). After a
        connection error or timeout the upload may exist, so the error propagates. Asking again is
        safe: Redivis refuses a second upload of one session ("already used by upload N"), which
        :class:`~airflow_provider_redivis.upload_creation.CreateOnce` turns into attaching to it.

        :param table: ``owner.dataset:next.table``.
        :param name: the upload's name in the table.
        :param upload_type: one of Redivis's upload types (``delimited``, ``parquet``, ...); None lets Redivis infer.
        :param resumable_upload_id: the ``id`` from :meth:`create_resumable_upload`, whose bytes this upload takes.
        :param temp_upload_id: the ``id`` from :meth:`create_temp_upload`, instead.
        :param transfer_specification: or Redivis fetches the data itself (a URL, another cloud).
        :param metadata: Redivis's per-variable metadata (a mapping, or its JSON text). The other options
            (delimiter, header row, ...) go to Redivis under their camelCase names; None leaves Redivis's
            default. All are checked first by :func:`~airflow_provider_redivis.upload_options.check_upload_options`.
        :returns: the upload resource (``uri``, ``name``, ``status``, ...).
        """
        self._check_upload_name(name)
        sources = [s for s in (resumable_upload_id, temp_upload_id, transfer_specification) if s is not None]
        if len(sources) > 1:
            raise RedivisConfigError(
                "Give at most one of resumable_upload_id, temp_upload_id and transfer_specification."
            )
        checked = check_upload_options(
            {
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
        )
        options: dict[str, Any] = {
            "name": name,
            "type": upload_type,
            "resumableUploadId": resumable_upload_id,
            "tempUploadId": temp_upload_id,
            "transferSpecification": dict(transfer_specification) if transfer_specification else None,
            **{_camel_case(option): value for option, value in checked.items()},
        }
        # Unset options are left out so Redivis applies its own defaults.
        body = {key: value for key, value in options.items() if value is not None}
        return self._call(
            "POST",
            f"{self._table_path(table)}/uploads",
            json_body=body,
            send_json=True,
            retry_if=is_refused_request,
        )

    def get_upload(self, table: str, name: str) -> dict[str, Any]:
        """The upload named ``name`` in ``table``.

        :param table: ``owner.dataset:version.table``.
        :param name: the upload's name.
        :returns: the upload resource; a 404 raises :class:`RedivisNotFoundError`.
        """
        return self._call("GET", f"{self._table_path(table)}/uploads/{self._upload_segment(name)}")

    def get_upload_by_uri(self, uri: str) -> dict[str, Any]:
        """The upload at ``uri``.

        :param uri: the upload's ``uri`` as Redivis returned it.
        :returns: the upload resource.
        """
        return self._call("GET", self._uri_path(uri))

    def upload_exists(self, table: str, name: str) -> bool:
        """``HEAD`` the upload by name.

        :param table: ``owner.dataset:version.table``.
        :param name: the upload's name.
        :returns: True if it exists, False on 404; any other error raises.
        """
        try:
            self._request("HEAD", f"{self._table_path(table)}/uploads/{self._upload_segment(name)}")
        except RedivisNotFoundError:
            return False
        return True

    def list_uploads(self, table: str, max_results: int | None = None) -> Iterator[dict[str, Any]]:
        """Every upload of the table, following ``nextPageToken``.

        :param table: ``owner.dataset:version.table``.
        :param max_results: stop after this many (None: all).
        :returns: an iterator of upload resources; pages are fetched as it is consumed.
        """
        if max_results is not None and (
            isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 0
        ):
            raise RedivisConfigError(f"max_results must be a whole number >= 0 or None, got {max_results!r}.")
        return self._iter_uploads(self._table_path(table), max_results)

    def _iter_uploads(self, path: str, max_results: int | None) -> Iterator[dict[str, Any]]:
        path = f"{path}/uploads"
        given = 0
        page_token: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            if max_results is not None and given >= max_results:
                return
            params: dict[str, Any] = {
                "maxResults": LIST_PAGE_SIZE
                if max_results is None
                else min(LIST_PAGE_SIZE, max_results - given)
            }
            if page_token:
                params["pageToken"] = page_token
            page = self._call("GET", path, params=params)
            for upload in page.get("results") or []:
                if max_results is not None and given >= max_results:
                    return
                given += 1
                yield upload
            page_token = page.get("nextPageToken")
            if not page_token:
                return
            if page_token in seen_tokens:
                raise RedivisError(f"Redivis handed out the same page token twice while listing {path}.")
            seen_tokens.add(page_token)
        raise RedivisError(f"Listing {path} did not end after {MAX_LIST_PAGES} pages; giving up.")

    def delete_upload(self, uri: str) -> None:
        """``DELETE {uri}``. A 404 after a retried attempt counts as done: the lost attempt deleted it.

        :param uri: the upload's ``uri`` as Redivis returned it.
        """
        self._request("DELETE", self._uri_path(uri), ok_after_retry=(404,))

    # -- waiting -------------------------------------------------------------------------------

    def find_upload(self, target: UploadTarget) -> dict[str, Any] | None:
        """The upload to wait for, looked up by ``uri`` or by table and name.

        :param target: the upload.
        :returns: the upload resource, or None when one looked up by name does not exist yet (another
            task may still be sending it). A missing table, or a missing upload named by ``uri``, raises.
        """
        if target.upload_uri:
            try:
                return self.get_upload_by_uri(target.upload_uri)
            except RedivisNotFoundError as exc:
                raise RedivisNotFoundError(
                    exc.status,
                    exc.message,
                    code=exc.code,
                    method=exc.method,
                    path=exc.path,
                    hint="The upload was deleted (replaced by another run?) or the token can no longer see it: "
                    "there is nothing left to wait for",
                ) from exc
        table, name = str(target.table), str(target.upload_name)  # UploadTarget guarantees both
        try:
            return self.get_upload(table, name)
        except RedivisNotFoundError:
            self.get_table(table)  # waiting never creates a missing table: that 404 is final
            return None

    def check_upload(self, target: UploadTarget) -> UploadCheck:
        """One status check, as the sensor's poke and every wait make it.

        :param target: the upload.
        :returns: what it found; a transient failure (connection error, 429, 5xx) is a pending check
            carrying the error. Any other failure raises: waiting cannot change it.
        """
        return look(lambda: self.find_upload(target))

    def wait_for_upload(
        self,
        target: UploadTarget | str,
        *,
        poll_interval: float = 10.0,
        timeout: float = 24 * 3600.0,
        max_poll_interval: float | None = None,
    ) -> dict[str, Any]:
        """Poll until Redivis is done with the upload, as ``DbtCloudHook.wait_for_job_run_status`` does.

        :param target: the upload: an :class:`UploadTarget`, or its ``uri``.
        :param poll_interval: seconds before the second check.
        :param timeout: seconds to wait in all.
        :param max_poll_interval: each quiet check waits 1.5x longer, up to this (default: ``poll_interval``,
            a steady pace).
        :returns: the upload resource, ``completed`` or ``failed``: what a failure means is the caller's call.
        :raises WaitTimeoutError: still pending at the deadline; it says what was seen last.
        """
        if isinstance(target, str):
            target = UploadTarget(upload_uri=target)
        if poll_interval <= 0 or timeout <= 0:
            raise RedivisConfigError("poll_interval and timeout must be positive numbers of seconds.")
        deadline = time.monotonic() + timeout
        intervals = poll_intervals(poll_interval, max_poll_interval or poll_interval)
        # A turn in the token's request budget is waited for within this wait's deadline, no longer.
        self.budget_deadline = deadline
        try:
            return self._wait(target, deadline, timeout, intervals)
        finally:
            self.budget_deadline = None

    def _wait(
        self, target: UploadTarget, deadline: float, timeout: float, intervals: Iterator[float]
    ) -> dict[str, Any]:
        while True:
            check = self.check_upload(target)
            if check.outcome is not UploadOutcome.PENDING and check.upload is not None:
                return check.upload
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeoutError(timeout_message(target, timeout, check.seen))
            delay = min(max(next(intervals), check.retry_after), left)
            if check.error is not None:
                self.log.warning(
                    "Status check of upload %s failed, still waiting: %s", target.describe(), check.error
                )
            else:
                self.log.info("Upload %s: %s; next check in %.1f s", target.describe(), check.seen, delay)
            time.sleep(delay)
