"""Uploads: create, read, list, delete, and wait until Redivis has processed one."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from airflow.providers.common.compat.sdk import conf

from airflow_provider_redivis.engine.options import check_upload_options
from airflow_provider_redivis.engine.retry import is_refused_request, is_retryable_error
from airflow_provider_redivis.engine.status import (
    MIN_POLL_INTERVAL,
    UploadCheck,
    UploadOutcome,
    UploadTarget,
    failed_check,
    found_check,
    look,
    paced_interval,
    poll_intervals,
    timeout_message,
    utc_now,
)
from airflow_provider_redivis.errors import (
    RedivisConfigError,
    RedivisError,
    RedivisNotFoundError,
    WaitTimeoutError,
)
from airflow_provider_redivis.hooks.base import RedivisHookBase
from airflow_provider_redivis.references import normalise_name

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping


def _camel_case(option: str) -> str:
    """``has_header_row`` → ``hasHeaderRow``: Redivis's name of an upload option."""
    first, *rest = option.split("_")
    return first + "".join(word.capitalize() for word in rest)


#: list_uploads pages; a server that keeps handing out page tokens must not keep us forever.
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 10_000


def least_poll_interval() -> float:
    """Airflow's ``[redivis] min_poll_interval`` (default 30 s): the least interval of a wait that polls on
    its own, so that a fleet of them stays inside Redivis's request budget."""
    least = conf.getfloat("redivis", "min_poll_interval", fallback=MIN_POLL_INTERVAL)
    if not least > 0:
        raise RedivisConfigError(
            f"[redivis] min_poll_interval must be a positive number of seconds, got {least!r}."
        )
    return least


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
        :class:`~airflow_provider_redivis.engine.creation.CreateOnce` turns into attaching to it.

        :param table: ``owner.dataset:next.table``.
        :param name: the upload's name in the table.
        :param upload_type: one of Redivis's upload types (``delimited``, ``parquet``, ...); None lets Redivis infer.
        :param resumable_upload_id: the ``id`` from :meth:`create_resumable_upload`, whose bytes this upload takes.
        :param temp_upload_id: the ``id`` from :meth:`create_temp_upload`, instead.
        :param transfer_specification: or Redivis fetches the data itself (a URL, another cloud).
        :param metadata: Redivis's per-variable metadata (a mapping, or its JSON text). The other options
            (delimiter, header row, ...) go to Redivis under their camelCase names; None leaves Redivis's
            default. All are checked first by :func:`~airflow_provider_redivis.engine.options.check_upload_options`.
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

        :param table: ``owner.dataset:version.table``, or the table's ``uri`` as Redivis returns it
            (``/tables/owner.dataset:3.table:7``).
        :param max_results: stop after this many (None: all).
        :returns: an iterator of upload resources; pages are fetched as it is consumed.
        """
        if max_results is not None and (
            isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 0
        ):
            raise RedivisConfigError(f"max_results must be a whole number >= 0 or None, got {max_results!r}.")
        path = self._uri_path(table) if table.startswith("/") else self._table_path(table)
        return self._iter_uploads(path, max_results)

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
            if table not in self._tables_seen:
                self.get_table(table)  # waiting never creates a missing table: that 404 is final
                self._tables_seen.add(table)  # once seen, each later look costs one request, not two
            return None

    def check_upload(self, target: UploadTarget) -> UploadCheck:
        """One status check, as the sensor's poke and every wait make it.

        :param target: the upload.
        :returns: what it found; a transient failure (connection error, 429, 5xx) is a pending check
            carrying the error. Any other failure raises: waiting cannot change it.
        """
        return look(lambda: self.find_upload(target))

    def check_uploads(
        self, targets: Collection[UploadTarget], table_uri: str | None = None
    ) -> dict[UploadTarget, UploadCheck | Exception]:
        """One status check of several uploads of one table: one listing of the table, not a GET each.

        :param targets: the uploads, all in the table at ``table_uri``.
        :param table_uri: the table's uri (:attr:`UploadTarget.table_uri`); None checks each on its own.
        :returns: for each target what :meth:`check_upload` answers, or the error it raises. A transient
            failure of the listing is every target's pending check; any other failure, each target's own
            check. An upload by uri missing from the listing is looked up on its own (a 404 there is final);
            one by name is not created yet.
        """
        wanted = list(dict.fromkeys(targets))
        if table_uri is None or len(wanted) < 2:  # one GET tells one upload as much as a listing page
            return self._check_each(wanted)
        checked_at = utc_now()
        try:
            found, unsure = self._find_listed(table_uri, wanted)
        except Exception as exc:
            if is_retryable_error(exc):
                return dict.fromkeys(wanted, failed_check(exc, checked_at))
            return self._check_each(wanted)  # 401, 403, a missing table: in each one's own words
        results: dict[UploadTarget, UploadCheck | Exception] = {
            target: found_check(found.get(target), checked_at) for target in wanted if target not in unsure
        }
        results.update(self._check_each(unsure))
        return results

    def _find_listed(
        self, table_uri: str, targets: list[UploadTarget]
    ) -> tuple[dict[UploadTarget, dict[str, Any]], list[UploadTarget]]:
        """The targets' uploads in the table's listing, and the targets it cannot answer for."""
        by_uri: dict[str, list[UploadTarget]] = {}
        by_name: dict[str, list[UploadTarget]] = {}
        for target in targets:
            if target.upload_uri:
                by_uri.setdefault(self._same_uri(target.upload_uri), []).append(target)
            else:
                by_name.setdefault(str(target.upload_name), []).append(target)
        found: dict[UploadTarget, dict[str, Any]] = {}
        listed_keys: set[str] = set()
        # Past one page per target, a GET each costs less than the rest of the listing.
        most = LIST_PAGE_SIZE * len(targets)
        read_all = True
        for count, upload in enumerate(self.list_uploads(table_uri), 1):
            name = upload.get("name")
            name = name if isinstance(name, str) else ""
            for target in [*by_uri.get(self._same_uri(upload.get("uri")), ()), *by_name.get(name, ())]:
                found[target] = upload
            listed_keys.add(_name_key(name))
            if len(found) == len(targets):
                break
            if count >= most:
                read_all = False
                break
        unsure = [
            t
            for t in targets
            if t not in found
            # Redivis finds a name as it writes references (case, punctuation): its own GET decides.
            and (t.upload_uri or not read_all or _name_key(t.upload_name) in listed_keys)
        ]
        return found, unsure

    def _check_each(self, targets: Collection[UploadTarget]) -> dict[UploadTarget, UploadCheck | Exception]:
        results: dict[UploadTarget, UploadCheck | Exception] = {}
        for target in targets:
            try:
                results[target] = self.check_upload(target)
            except Exception as exc:  # one upload's answer ends only that upload's wait
                results[target] = exc
        return results

    def _same_uri(self, uri: object) -> str:
        """A uri as the listing and a target compare it: relative to the API, percent-decoded."""
        if not isinstance(uri, str):
            return ""
        return unquote(uri[len(self.api_url) :] if uri.startswith(self.api_url + "/") else uri)

    def wait_for_upload(
        self,
        target: UploadTarget | str,
        *,
        poll_interval: float | None = None,
        timeout: float = 24 * 3600.0,
        max_poll_interval: float | None = None,
    ) -> dict[str, Any]:
        """Poll until Redivis is done with the upload, as ``DbtCloudHook.wait_for_job_run_status`` does.

        :param target: the upload: an :class:`UploadTarget`, or its ``uri``.
        :param poll_interval: seconds before the second check; never less than :func:`least_poll_interval`
            (30 s), which is the default: a fleet of waits stays inside Redivis's request budget.
        :param timeout: seconds to wait in all.
        :param max_poll_interval: each quiet check waits 1.5x longer, up to this (default: ``poll_interval``,
            a steady pace).
        :returns: the upload resource, ``completed`` or ``failed``: what a failure means is the caller's call.
        :raises WaitTimeoutError: still pending at the deadline; it says what was seen last.
        """
        if isinstance(target, str):
            target = UploadTarget(upload_uri=target)
        if (poll_interval is not None and poll_interval <= 0) or timeout <= 0:
            raise RedivisConfigError("poll_interval and timeout must be positive numbers of seconds.")
        poll_interval, warning = paced_interval("poll_interval", poll_interval, least_poll_interval())
        if warning:
            self.log.warning("%s", warning)
        deadline = time.monotonic() + timeout
        intervals = poll_intervals(poll_interval, max(max_poll_interval or poll_interval, poll_interval))
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


def _name_key(name: object) -> str:
    return normalise_name(name).lower() if isinstance(name, str) else ""
