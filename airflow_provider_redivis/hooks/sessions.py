"""Where the bytes go: resumable sessions, on Redivis's ``resumableUpload`` path or its ``tempUploads`` path.

The bytes themselves travel through :class:`~airflow_provider_redivis.engine.resumable.ResumableSession`, on this
hook's session, so the token's origin rule (``auth.py``) keeps it off a Cloud Storage session URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_redivis.engine.resumable import ResumableSession
from airflow_provider_redivis.engine.retry import is_retryable_error
from airflow_provider_redivis.errors import RedivisAPIError, RedivisConfigError
from airflow_provider_redivis.hooks.api_errors import api_error_from_response
from airflow_provider_redivis.hooks.auth import mask_session_url, origin_of
from airflow_provider_redivis.hooks.base import RedivisHookBase
from airflow_provider_redivis.hooks.connection import is_loopback_host

if TYPE_CHECKING:
    import requests


def check_session_url(url: str) -> None:
    """The one rule for a URL that receives the source: https, or plain http to a loopback host (the emulator).

    Applied where Redivis hands a session URL out (either transport) and again where a transfer is bound
    to one (a checkpoint's URL included). The error names the host only: the URL is a credential.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname or "")):
        return
    raise RedivisConfigError(
        f"Refusing to send the source to an upload session URL over {parts.scheme or 'no scheme'}:// to "
        f"{parts.hostname or '(no host)'!r}: only https, or plain http to a loopback host, may carry it (the URL "
        "is a credential and the bytes would travel unencrypted). Check that the connection's host is Redivis "
        "(https://redivis.com), not a server or proxy that hands out or rewrites such URLs."
    )


def _check_size(size: object) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise RedivisConfigError(f"size must be a whole number of bytes >= 0, got {size!r}.")


class UploadSessionsAPI(RedivisHookBase):
    """Open a resumable session on either transport, and hand out the transfer that fills it."""

    def create_resumable_upload(self, table: str, size: int) -> dict[str, Any]:
        """Open a resumable session (``POST /tables/{table}/resumableUpload``); it expires after 24 hours.

        Retried like a read: a session created by a lost attempt is never used and simply expires.

        :param table: ``owner.dataset:next.table``.
        :param size: the source's size in bytes.
        :returns: ``{"kind", "id", "url"}``: ``url`` takes :meth:`resumable_session`, ``id`` goes into
            :meth:`create_upload` as ``resumable_upload_id``.
        :raises RedivisConfigError: for a session URL :func:`check_session_url` refuses.
        """
        _check_size(size)
        created = self._call("POST", f"{self._table_path(table)}/resumableUpload", params={"size": size})
        if isinstance(created.get("url"), str):
            check_session_url(created["url"])
        return created

    def create_temp_upload(self, table: str, size: int | None, name: str | None = None) -> dict[str, Any]:
        """A temp upload (``POST /tables/{table}/tempUploads``, the official client's path).

        Retried like a read: one created by a lost attempt is never used.

        :param table: ``owner.dataset:next.table``.
        :param size: the source's size in bytes; None for a stream of unknown size (Redivis's ``size`` is
            required, and 0 says nothing is known).
        :param name: the file name Redivis records for it.
        :returns: ``{"kind", "id", "url", "name", "size", "resumable"}``: ``url`` is served by Redivis and
            takes :meth:`start_temp_upload_session`; ``id`` goes into :meth:`create_upload` as
            ``temp_upload_id``.
        """
        if size is not None:
            _check_size(size)
        spec = {"size": size or 0, "name": name or "upload", "resumable": True}
        body = self._call(
            "POST",
            f"{self._table_path(table)}/tempUploads",
            json_body={"tempUploads": [spec]},
            send_json=True,
        )
        results = body.get("results")
        if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], dict):
            raise RedivisAPIError(
                200, "the answer to creating a temp upload holds no single result", path="tempUploads"
            )
        temp = results[0]
        if not temp.get("id") or not temp.get("url"):
            raise RedivisAPIError(
                200, "the temp upload Redivis returned has no id or url", path="tempUploads"
            )
        mask_session_url(str(temp["url"]))
        return temp

    def sends_token_to(self, url: str) -> bool:
        """Whether a request to ``url`` carries the Redivis token: only when it is the API's own origin.

        The token policy in one place: a temp upload's URL is served by Redivis, and when it is on the
        API's origin (scheme, host and port) it gets the token, as the official client sends it; on any
        other origin (a Cloud Storage session URL, say) it never does.

        :param url: where a request would go.
        :returns: True only for the API's own origin.
        """
        return origin_of(url) == origin_of(self.api_url)

    def start_temp_upload_session(self, url: str, size: int | None) -> str:
        """Open the resumable session of a temp upload: ``POST {url}`` with ``x-goog-resumable: start``.

        The token goes with this request only if ``url`` is on the API's origin (:meth:`sends_token_to`);
        the session URL it returns is its own credential and gets no token unless it too is on the API's
        origin. Both URLs are masked in Airflow's logs. Retried like a read: a session opened by a lost
        attempt is never used and expires.

        :param url: the temp upload's ``url`` from :meth:`create_temp_upload`.
        :param size: the source's size in bytes; None opens Cloud Storage's session of unknown total (no
            ``x-upload-content-length``), which a stream finishes by naming the total in its last request.
        :returns: the session URL (from ``Location``), for :meth:`resumable_session`.
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise RedivisConfigError("A temp upload URL must be an http(s) URL.")
        mask_session_url(url)
        secrets = (self.settings.token, url)
        path = "<temp upload url>"
        headers = {"x-goog-resumable": "start"}
        if size is not None:
            headers["x-upload-content-length"] = str(size)

        def attempt() -> requests.Response:
            response = self.session.post(
                url,
                data=b"",
                headers=headers,
                timeout=self.timeout,
                verify=self.settings.verify,
                allow_redirects=False,
            )
            if response.status_code >= 400:
                error = api_error_from_response(response, method="POST", path=path, secrets=secrets)
                response.close()
                raise error
            return response

        response = self._retrying(is_retryable_error, f"POST {path}")(attempt)
        location = response.headers.get("Location")
        response.close()
        if response.status_code not in (200, 201) or not location:
            raise RedivisAPIError(
                response.status_code,
                "starting the temp upload's session returned no Location",
                method="POST",
                path=path,
            )
        mask_session_url(location)
        check_session_url(location)
        return location

    def resumable_session(
        self, url: str, total: int | None, *, chunk_size: int | None = None, checksum: str | None = "auto"
    ) -> ResumableSession:
        """The transfer to a resumable-session URL, on this hook's HTTP session, timeouts and retry policy.

        The URL is masked in Airflow's logs first: it is a credential of its own. The hook's
        origin-bound auth keeps the Redivis token off it.

        :param url: the session URL (from :meth:`create_resumable_upload`, or a checkpoint).
        :param total: the source's size in bytes, or None while unknown (a stream).
        :param chunk_size: bytes per request, a multiple of 256 KiB; None sizes requests from the rate.
        :param checksum: ``"auto"`` (crc32c), ``"crc32c"``, ``"md5"``, or None to check the size only.
        :returns: a :class:`~airflow_provider_redivis.engine.resumable.ResumableSession`.
        :raises RedivisConfigError: for a URL :func:`check_session_url` refuses.
        """
        mask_session_url(url)
        check_session_url(url)
        return ResumableSession(
            self.session,
            url,
            total,
            chunk_size=chunk_size,
            checksum=checksum,
            timeout=self.timeout,
            retry_policy=self.retry_policy,
        )
