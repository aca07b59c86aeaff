"""RedivisHook: an Airflow connection turned into an authenticated ``requests`` session and the API calls.

The connection
--------------
- **password**: the Redivis API token (needs the ``data.edit`` scope for uploads and versions).
- **host** (optional): the base URL, ``https://redivis.com`` when empty; the API is at ``{host}/api/v1``.
  A host with a scheme (``http://127.0.0.1:8765``) is used as written. A host without one gets the
  extra ``scheme`` if set, else ``http`` for a loopback host (``127.0.0.0/8``, ``::1``, ``localhost``)
  and ``https`` for any other. Plain ``http`` to a host that is not loopback is refused: the token
  would cross the network in clear text.
- **port** (optional): used when the host names none; the scheme's own port (443, 80) is dropped.
  Airflow 3.3's Test button needs it filled in the UI (443 for redivis.com); 0 counts as none.
- **extras**: ``connect_timeout`` (10 s), ``read_timeout`` (60 s), ``max_attempts`` (6),
  ``max_retry_seconds`` (300 s), ``verify`` (true; or a CA bundle path), ``scheme``.

``AIRFLOW_CONN_REDIVIS_DEFAULT='redivis://:TOKEN@'`` is enough for redivis.com.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import requests
import tenacity
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from requests.auth import AuthBase

from airflow_provider_redivis import __version__
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisAuthError,
    RedivisConfigError,
    RedivisConflictError,
    RedivisError,
    RedivisNotFoundError,
    RedivisRateLimitError,
    RedivisServerError,
)
from airflow_provider_redivis.provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_redivis.references import (
    encode_reference,
    validate_dataset_reference,
    validate_table_reference,
)
from airflow_provider_redivis.resumable import ResumableSession
from airflow_provider_redivis.retry import (
    RetryPolicy,
    is_refused_request,
    is_retryable_error,
    parse_retry_after,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping

    from airflow.providers.common.compat.sdk import Connection

DEFAULT_HOST = "redivis.com"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
API_PATH = "/api/v1"
#: Redivis puts a HEAD response's error JSON, URL-encoded, in this header (a HEAD has no body).
ERROR_PAYLOAD_HEADER = "X-REDIVIS-ERROR-PAYLOAD"
WARNING_HEADER = "X-REDIVIS-WARNING"
#: How much of a server's error text goes into an exception message.
MAX_ERROR_TEXT = 500
#: list_uploads pages; a server that keeps handing out page tokens must not keep us forever.
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 10_000
MERGE_STRATEGIES = ("append", "replace")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# Printable ASCII without spaces: anything else would break the header, and requests would quote
# the whole header value (token included) in its error message.
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")


def _airflow_version() -> str:
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover - airflow is a dependency
        return "unknown"
    return str(airflow_version)


def user_agent() -> str:
    return (
        f"airflow-provider-redivis/{__version__} apache-airflow/{_airflow_version()} "
        f"python-requests/{requests.__version__}"
    )


def is_loopback_host(hostname: str) -> bool:
    """127.0.0.0/8, ::1 and localhost (RFC 6761): the only hosts allowed plain http."""
    name = hostname.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in, the unit the token is bound to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def resolve_base_url(host: str | None, port: int | None = None, scheme: str | None = None) -> str:
    """The base URL (no trailing slash, no ``/api/v1``) from the connection's host, port and scheme."""
    host = (host or "").strip() or DEFAULT_HOST
    wanted = (scheme or "").strip().lower() or None
    if wanted not in (None, "http", "https"):
        raise RedivisConfigError(
            f"The connection's extra 'scheme' must be 'https' or 'http', got {scheme!r}."
        )
    if "://" not in host:
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"  # a bare IPv6 address needs brackets in a URL
        except ValueError:
            pass
        hostname = urlsplit(f"//{host}").hostname or ""
        host = f"{wanted or ('http' if is_loopback_host(hostname) else 'https')}://{host}"
    parts = urlsplit(host)
    url_scheme = parts.scheme.lower()
    if url_scheme not in ("http", "https"):
        raise RedivisConfigError(
            f"The connection's host {host!r} must be a base URL such as 'https://redivis.com'."
        )
    if wanted and wanted != url_scheme:
        raise RedivisConfigError(
            f"The connection's host says {url_scheme!r} but its extra 'scheme' says {wanted!r}: keep one."
        )
    if parts.username or parts.password:
        raise RedivisConfigError(
            "The connection's host must not carry credentials: put the API token in the password field."
        )
    if parts.query or parts.fragment:
        raise RedivisConfigError(
            f"The connection's host must be a base URL without '?' or '#', such as 'https://redivis.com'."
            f" Got {parts.scheme}://{parts.netloc}{parts.path}?…"
        )
    hostname = (parts.hostname or "").lower()
    if not hostname:
        raise RedivisConfigError(f"The connection's host {host!r} names no server.")
    try:
        url_port = parts.port
    except ValueError as exc:
        raise RedivisConfigError(f"The connection's host {host!r} has an invalid port.") from exc
    if url_port is not None and port and url_port != port:
        raise RedivisConfigError(
            f"The connection's host says port {url_port} and its port field says {port}: keep one."
        )
    final_port = url_port or port or None  # 0 (what Airflow 3.3's UI sends for an empty port) is none
    if final_port == {"http": 80, "https": 443}[url_scheme]:
        final_port = None  # host https://redivis.com + port 443 (as the UI form needs it) is redivis.com
    if url_scheme == "http" and not is_loopback_host(hostname):
        raise RedivisConfigError(
            f"Plain http:// to {hostname!r} would send the API token unencrypted; it is allowed only for "
            "loopback hosts (127.0.0.1, ::1, localhost). Use https:// (or leave the host empty for "
            "https://redivis.com)."
        )
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if final_port:
        netloc += f":{final_port}"
    path = parts.path.rstrip("/")
    if path.endswith(API_PATH):  # someone pasted the API URL itself
        path = path[: -len(API_PATH)]
    return f"{url_scheme}://{netloc}{path}"


def unknown_extras(extras: Mapping[str, Any]) -> list[str]:
    """Extras this provider does not read: most likely a typo the user should hear about."""
    return sorted(k for k in extras if k.removeprefix("extra__redivis__") not in CONN_FIELDS)


def _extra(extras: Mapping[str, Any], name: str) -> Any:
    # The Airflow 2 UI stored custom fields as 'extra__<conn type>__<name>'; newer ones store '<name>'.
    for key in (name, f"extra__redivis__{name}"):
        value = extras.get(key)
        if value is not None and value != "":
            return value
    return None


def _positive_number(extras: Mapping[str, Any], name: str, default: float) -> float:
    value = _extra(extras, name)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not number > 0 or number == float("inf"):
        raise RedivisConfigError(
            f"The connection's extra {name!r} must be a positive number of seconds, got {value!r}."
        )
    return number


def _positive_int(extras: Mapping[str, Any], name: str, default: int) -> int:
    value = _extra(extras, name)
    if value is None:
        return default
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else 0
    except ValueError:
        number = 0
    if number < 1:
        raise RedivisConfigError(
            f"The connection's extra {name!r} must be a whole number >= 1, got {value!r}."
        )
    return number


def _verify(extras: Mapping[str, Any]) -> bool | str:
    value = _extra(extras, "verify")
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    if not os.path.exists(text):
        raise RedivisConfigError(
            f"The connection's extra 'verify' must be true, false or the path of a CA bundle; "
            f"{text!r} is none of these (no such file)."
        )
    return text


@dataclass(frozen=True)
class RedivisConnectionSettings:
    """Everything the hook takes from the Airflow connection, validated."""

    base_url: str
    token: str = field(repr=False)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_attempts: int = RetryPolicy.max_attempts
    max_retry_seconds: float = RetryPolicy.max_total_seconds
    verify: bool | str = True

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{API_PATH}"

    @classmethod
    def from_connection(cls, conn: Connection) -> RedivisConnectionSettings:
        conn_id = getattr(conn, "conn_id", None) or "?"
        extras = conn.extra_dejson or {}
        token = (conn.password or "").strip()
        if not token:
            where = " (it is in the login field; move it to the password)" if conn.login else ""
            raise RedivisConfigError(
                f"The Redivis connection {conn_id!r} has no API token{where}. Put the token in the "
                "connection's password, e.g. AIRFLOW_CONN_REDIVIS_DEFAULT='redivis://:TOKEN@'."
            )
        if not _TOKEN_RE.match(token):
            raise RedivisConfigError(
                f"The API token in connection {conn_id!r} contains spaces or characters that cannot go in "
                "an HTTP header; copy it again from Redivis (Settings > API tokens)."
            )
        # Register before anything can log it: Airflow then replaces it with *** in every log line.
        mask_secret(token)
        return cls(
            base_url=resolve_base_url(conn.host, conn.port, _extra(extras, "scheme")),
            token=token,
            connect_timeout=_positive_number(extras, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            read_timeout=_positive_number(extras, "read_timeout", DEFAULT_READ_TIMEOUT),
            max_attempts=_positive_int(extras, "max_attempts", RetryPolicy.max_attempts),
            max_retry_seconds=_positive_number(extras, "max_retry_seconds", RetryPolicy.max_total_seconds),
            verify=_verify(extras),
        )


class OriginBearerAuth(AuthBase):
    """``Authorization: Bearer`` on requests to one origin only; stripped from any other.

    The hook's session also carries the resumable-session PUTs, whose URL is its own credential
    on another origin: the Redivis token must never reach it.
    """

    def __init__(self, token: str, api_url: str) -> None:
        self._token = token
        self.origin = origin_of(api_url)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin_of(request.url or "") == self.origin:
            request.headers["Authorization"] = f"Bearer {self._token}"
        else:
            request.headers.pop("Authorization", None)
        return request

    def __repr__(self) -> str:
        return f"OriginBearerAuth(origin={self.origin!r})"


class RedivisSession(requests.Session):
    """A session whose origin-bound auth also decides on every redirect hop."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        # requests keeps Authorization across same-host redirects (other port or scheme included) and
        # may add .netrc credentials: the origin rule has the last word.
        if isinstance(self.auth, OriginBearerAuth):
            self.auth(prepared_request)


def _one_line(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        return f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text


def _scrub(text: str, secrets: Collection[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_error_payload(payload: object) -> tuple[str | None, str | None, str | None]:
    """(code, message, scope) from either error shape Redivis uses.

    ``{"error": {"status": 404, "message": "..."}}`` or
    ``{"error": "insufficient_scope", "error_description": "...", "status": 403, "scope": "data.edit"}``.
    """
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error")
    scope = payload.get("scope")
    code: Any = None
    message: Any = None
    if isinstance(error, dict):
        code = error.get("code") or error.get("error")
        message = error.get("message") or error.get("error_description")
        scope = scope or error.get("scope")
    elif isinstance(error, str):
        code = error
        message = payload.get("error_description") or payload.get("message")
    else:
        message = payload.get("message")
    return (
        str(code) if code else None,
        str(message) if message else None,
        str(scope) if scope else None,
    )


_ERROR_CLASSES: dict[int, type[RedivisAPIError]] = {
    401: RedivisAuthError,
    403: RedivisAuthError,
    404: RedivisNotFoundError,
    409: RedivisConflictError,
    429: RedivisRateLimitError,
}


def _hint(status: int, code: str | None, scope: str | None) -> str | None:
    if status == 401:
        return (
            "Check the Airflow connection's password: it must be a valid, unexpired Redivis API token "
            "(Redivis > Settings > API tokens)"
        )
    if status == 403 and code == "insufficient_scope":
        return f"Create a token with the {scope or 'data.edit'} scope and put it in the connection's password"
    if status == 403:
        return (
            "The token's user may not do this: ask the dataset's owner for edit access, or use another token"
        )
    if status == 404:
        return (
            "Check the reference (owner.dataset:version.table) and that the token's user can see it; "
            "uploads go to the 'next' version"
        )
    if status == 409:
        return "It exists already: use another name, or delete the existing one first"
    if status == 429:
        return (
            "Redivis allows about 1,000 requests a minute: run fewer tasks at once (an Airflow pool) "
            "or raise the connection's max_retry_seconds"
        )
    if status >= 500:
        return "Redivis failed to answer; if it persists, try later or raise max_attempts/max_retry_seconds"
    return None


def api_error_from_response(
    response: requests.Response, *, method: str, path: str, secrets: Collection[str] = ()
) -> RedivisAPIError:
    """The exception for an error response: status, Redivis's code and message, and what to do."""
    status = response.status_code
    payload: object = None
    text = ""
    header = response.headers.get(ERROR_PAYLOAD_HEADER)
    if header:
        text = unquote(header)
    elif method.upper() != "HEAD":
        text = response.text or ""
    if text:
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
    code, message, scope = parse_error_payload(payload)
    if message is None:
        message = text if payload is None and text.strip() else (response.reason or f"HTTP {status}")
    cls = _ERROR_CLASSES.get(status) or (RedivisServerError if status >= 500 else RedivisAPIError)
    return cls(
        status,
        _scrub(_one_line(message), secrets),
        code=_scrub(code, secrets) if code else None,
        method=method.upper(),
        path=path,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        hint=_hint(status, code, scope),
    )


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, RedivisAPIError):
        return f"HTTP {exc.status}" + (f" {exc.code}" if exc.code else "")
    return type(exc).__name__


def _timeout_tuple(timeout: float | tuple[float, float]) -> tuple[float, float]:
    pair = (timeout, timeout) if isinstance(timeout, (int, float)) else tuple(timeout)
    if len(pair) != 2 or any(isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0 for t in pair):
        raise RedivisConfigError(
            f"timeout must be a positive number of seconds or a (connect, read) pair, got {timeout!r}."
        )
    return float(pair[0]), float(pair[1])


class RedivisHook(BaseHook):
    """The Redivis REST API for one Airflow connection: one session, timeouts, retries, clear errors.

    :param redivis_conn_id: the Airflow connection (type ``redivis``; token in the password).
    :param timeout: seconds, or a (connect, read) pair, overriding the connection's extras.
    :param retry_policy: replaces the policy built from the connection's extras.
    :param retry_args: ``tenacity.Retrying`` keyword arguments laid over the policy's (for example
        ``{"stop": tenacity.stop_after_attempt(1)}`` to turn retries off).
    """

    conn_name_attr = "redivis_conn_id"
    default_conn_name = "redivis_default"
    conn_type = "redivis"
    hook_name = "Redivis"

    def __init__(
        self,
        redivis_conn_id: str = default_conn_name,
        *,
        timeout: float | tuple[float, float] | None = None,
        retry_policy: RetryPolicy | None = None,
        retry_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.redivis_conn_id = redivis_conn_id
        self._timeout_override = _timeout_tuple(timeout) if timeout is not None else None
        self._retry_policy_override = retry_policy
        self._retry_args_override = dict(retry_args or {})
        self._settings: RedivisConnectionSettings | None = None
        self._session: RedivisSession | None = None
        self._warnings_seen: set[str] = set()

    def __repr__(self) -> str:
        where = f", api_url={self._settings.api_url!r}" if self._settings else ""
        return f"{type(self).__name__}(redivis_conn_id={self.redivis_conn_id!r}{where})"

    # ----------------------------------------------------------------------------------------------
    # Connection, session, policy
    # ----------------------------------------------------------------------------------------------
    @property
    def settings(self) -> RedivisConnectionSettings:
        """Read from the Airflow connection on first use, so building the hook touches nothing."""
        if self._settings is None:
            conn = self.get_connection(self.redivis_conn_id)
            self._settings = RedivisConnectionSettings.from_connection(conn)
            if unknown := unknown_extras(conn.extra_dejson or {}):
                self.log.warning(
                    "Connection %r: ignoring extras %s; this provider reads %s",
                    self.redivis_conn_id,
                    unknown,
                    sorted(CONN_FIELDS),
                )
        return self._settings

    @property
    def api_url(self) -> str:
        return self.settings.api_url

    @property
    def timeout(self) -> tuple[float, float]:
        if self._timeout_override is not None:
            return self._timeout_override
        return self.settings.connect_timeout, self.settings.read_timeout

    @property
    def retry_policy(self) -> RetryPolicy:
        if self._retry_policy_override is not None:
            return self._retry_policy_override
        return RetryPolicy(
            max_attempts=self.settings.max_attempts, max_total_seconds=self.settings.max_retry_seconds
        )

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            settings = self.settings
            session = RedivisSession()
            session.auth = OriginBearerAuth(settings.token, settings.api_url)
            session.verify = settings.verify
            session.headers["User-Agent"] = user_agent()
            session.headers["Accept"] = "application/json"
            self._session = session
        return self._session

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> RedivisHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------
    # One request, retried
    # ----------------------------------------------------------------------------------------------
    def _log_retry(self, method: str, path: str) -> Callable[[tenacity.RetryCallState], None]:
        def log_it(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "Redivis API %s %s failed (%s) on attempt %d; retrying in %.2f s",
                method,
                path,
                _describe(exc),
                state.attempt_number,
                wait,
            )

        return log_it

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        send_json: bool = False,
        retry_if: Callable[[BaseException], bool] = is_retryable_error,
        ok_after_retry: Collection[int] = (),
        retry_overrides: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        """Send ``method`` to ``{api_url}{path}`` under the retry policy; raise RedivisAPIError on >= 400.

        ``ok_after_retry``: statuses that mean success when an earlier attempt may have got through
        (a DELETE whose answer was lost finds the upload gone).
        """
        url = f"{self.api_url}{path}"
        timeout = self.timeout
        verify = self.settings.verify
        session = self.session
        secrets = (self.settings.token,)
        attempts = 0

        def attempt() -> requests.Response:
            nonlocal attempts
            attempts += 1
            self.log.debug("Redivis API %s %s", method, path)
            response = session.request(
                method,
                url,
                params=params,
                json=json_body if send_json else None,
                timeout=timeout,
                verify=verify,
            )
            self._note_warning(response)
            if response.status_code >= 400 and not (attempts > 1 and response.status_code in ok_after_retry):
                error = api_error_from_response(response, method=method, path=path, secrets=secrets)
                response.close()
                raise error
            return response

        args = self.retry_policy.retry_args(retry_if, before_sleep=self._log_retry(method, path))
        args.update(self._retry_args_override)
        args.update(retry_overrides or {})
        return tenacity.Retrying(**args)(attempt)

    def _note_warning(self, response: requests.Response) -> None:
        warning = response.headers.get(WARNING_HEADER)
        if warning and warning not in self._warnings_seen:
            self._warnings_seen.add(warning)
            self.log.warning("Redivis: %s", _one_line(unquote(warning)))

    def _json(self, response: requests.Response, *, method: str, path: str) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise RedivisAPIError(
                response.status_code,
                f"the answer is not JSON: {_scrub(_one_line(response.text, 200), (self.settings.token,))}",
                method=method,
                path=path,
                hint=f"Check that the connection's host points at Redivis (the API is at {self.api_url})",
            ) from None
        if not isinstance(body, dict):
            raise RedivisAPIError(
                response.status_code,
                f"expected a JSON object, got {type(body).__name__}",
                method=method,
                path=path,
            )
        return body

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._json(self._request(method, path, **kwargs), method=method, path=path)

    def _uri_path(self, uri: str) -> str:
        """A resource ``uri`` as the API returned it (``/tables/…/uploads/789``), relative to the API URL."""
        if isinstance(uri, str) and uri.startswith(self.api_url + "/"):
            uri = uri[len(self.api_url) :]
        if not isinstance(uri, str) or not uri.startswith("/") or uri.startswith("//") or "://" in uri:
            raise RedivisConfigError(
                f"Expected a resource uri as Redivis returns it, like '/tables/owner.dataset:3.table:7/"
                f"uploads/789', got {uri!r}."
            )
        return uri

    @staticmethod
    def _table_path(table: str) -> str:
        return f"/tables/{encode_reference(validate_table_reference(table))}"

    @staticmethod
    def _dataset_path(dataset: str) -> str:
        return f"/datasets/{encode_reference(validate_dataset_reference(dataset))}"

    @staticmethod
    def _upload_segment(name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise RedivisConfigError(f"An upload name must be a non-empty string, got {name!r}.")
        # API rule: an upload is addressed by its name with '.' replaced by '_'.
        return encode_reference(name.replace(".", "_"))

    # ----------------------------------------------------------------------------------------------
    # Tables and uploads
    # ----------------------------------------------------------------------------------------------
    def get_table(self, table: str) -> dict[str, Any]:
        return self._call("GET", self._table_path(table))

    def create_resumable_upload(self, table: str, size: int) -> dict[str, Any]:
        """A resumable session for ``size`` bytes: ``{"kind", "id", "url"}``; it expires after 24 hours.

        Retried like a read: a session created by a lost attempt is never used and simply expires.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RedivisConfigError(f"size must be a whole number of bytes >= 0, got {size!r}.")
        return self._call("POST", f"{self._table_path(table)}/resumableUpload", params={"size": size})

    def create_temp_upload(self, table: str, size: int, name: str | None = None) -> dict[str, Any]:
        """A temp upload for ``size`` bytes (``POST /tables/{table}/tempUploads``, the official client's path).

        Returns ``{"kind", "id", "url", "name", "size", "resumable"}``: ``url`` is served by Redivis and
        takes :meth:`start_temp_upload_session`; ``id`` goes into :meth:`create_upload` as
        ``temp_upload_id``. Retried like a read: one created by a lost attempt is never used.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RedivisConfigError(f"size must be a whole number of bytes >= 0, got {size!r}.")
        spec = {"size": size, "name": name or "upload", "resumable": True}
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
        """
        return origin_of(url) == origin_of(self.api_url)

    def start_temp_upload_session(self, url: str, size: int) -> str:
        """Open the resumable session of a temp upload: ``POST {url}`` with ``x-goog-resumable: start``.

        Returns the session URL from ``Location``, for :meth:`resumable_session`. The token goes with
        this request only if ``url`` is on the API's origin (:meth:`sends_token_to`); the session URL
        it returns is its own credential and gets no token unless it too is on the API's origin. Both
        URLs are masked in Airflow's logs. Retried like a read: a session opened by a lost attempt
        is never used and expires.
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise RedivisConfigError("A temp upload URL must be an http(s) URL.")
        mask_session_url(url)
        secrets = (self.settings.token, url)
        path = "<temp upload url>"

        def attempt() -> requests.Response:
            response = self.session.post(
                url,
                data=b"",
                headers={"x-goog-resumable": "start", "x-upload-content-length": str(size)},
                timeout=self.timeout,
                verify=self.settings.verify,
                allow_redirects=False,
            )
            if response.status_code >= 400:
                error = api_error_from_response(response, method="POST", path=path, secrets=secrets)
                response.close()
                raise error
            return response

        args = self.retry_policy.retry_args(is_retryable_error, before_sleep=self._log_retry("POST", path))
        args.update(self._retry_args_override)
        response = tenacity.Retrying(**args)(attempt)
        location = response.headers.get("Location")
        response.close()
        if response.status_code not in (200, 201) or not location:
            raise RedivisAPIError(
                response.status_code,
                "starting the temp upload's session returned no Location",
                method="POST",
                path=path,
            )
        parts = urlsplit(location)
        if parts.scheme != "https" and not (
            parts.scheme == "http" and is_loopback_host(parts.hostname or "")
        ):
            raise RedivisAPIError(
                response.status_code,
                "the temp upload's session URL is not https; refusing to send the source over it",
                method="POST",
                path=path,
            )
        mask_session_url(location)
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
        :returns: a :class:`~airflow_provider_redivis.resumable.ResumableSession`.
        """
        mask_session_url(url)
        return ResumableSession(
            self.session,
            url,
            total,
            chunk_size=chunk_size,
            checksum=checksum,
            timeout=self.timeout,
            retry_policy=self.retry_policy,
        )

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
        """
        if not isinstance(name, str) or not name.strip():
            raise RedivisConfigError(f"An upload name must be a non-empty string, got {name!r}.")
        sources = [s for s in (resumable_upload_id, temp_upload_id, transfer_specification) if s is not None]
        if len(sources) > 1:
            raise RedivisConfigError(
                "Give at most one of resumable_upload_id, temp_upload_id and transfer_specification."
            )
        options: dict[str, Any] = {
            "name": name,
            "type": upload_type,
            "resumableUploadId": resumable_upload_id,
            "tempUploadId": temp_upload_id,
            "transferSpecification": dict(transfer_specification) if transfer_specification else None,
            "delimiter": delimiter,
            "hasHeaderRow": has_header_row,
            "skipBadRecords": skip_bad_records,
            "hasQuotedNewlines": has_quoted_newlines,
            "allowJaggedRows": allow_jagged_rows,
            "quoteCharacter": quote_character,
            "escapeCharacter": escape_character,
            "nullMarkers": null_markers,
            "schema": schema,
            "metadata": dict(metadata) if metadata is not None else None,
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
        return self._call("GET", f"{self._table_path(table)}/uploads/{self._upload_segment(name)}")

    def get_upload_by_uri(self, uri: str) -> dict[str, Any]:
        return self._call("GET", self._uri_path(uri))

    def upload_exists(self, table: str, name: str) -> bool:
        """``HEAD`` the upload by name: True if it exists, False on 404, an error otherwise."""
        try:
            self._request("HEAD", f"{self._table_path(table)}/uploads/{self._upload_segment(name)}")
        except RedivisNotFoundError:
            return False
        return True

    def list_uploads(self, table: str, max_results: int | None = None) -> Iterator[dict[str, Any]]:
        """Every upload of the table (or the first ``max_results``), following ``nextPageToken``."""
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
        """``DELETE {uri}``. A 404 after a retried attempt counts as done: the lost attempt deleted it."""
        self._request("DELETE", self._uri_path(uri), ok_after_retry=(404,))

    # ----------------------------------------------------------------------------------------------
    # Datasets, versions, tables
    # ----------------------------------------------------------------------------------------------
    def get_dataset(self, dataset: str) -> dict[str, Any]:
        return self._call("GET", self._dataset_path(dataset))

    def create_next_version(self, dataset: str) -> dict[str, Any]:
        """Create the unreleased ``next`` version. Not idempotent: retried only on 429/503."""
        return self._call("POST", f"{self._dataset_path(dataset)}/versions", retry_if=is_refused_request)

    def get_version(self, dataset: str, tag: str = "next") -> dict[str, Any]:
        if not isinstance(tag, str) or not tag.strip():
            raise RedivisConfigError(f"A version tag is 'next', 'current' or like 'v1_2', got {tag!r}.")
        return self._call("GET", f"{self._dataset_path(dataset)}/versions/{encode_reference(tag.strip())}")

    def release_version(self, dataset: str, release_notes: str | None = None) -> dict[str, Any]:
        """Release ``next``; it may finish later, so poll :meth:`get_version`. Retried only on 429/503."""
        body = {"releaseNotes": release_notes} if release_notes is not None else {}
        return self._call(
            "POST",
            f"{self._dataset_path(dataset)}/versions/next/release",
            json_body=body,
            send_json=True,
            retry_if=is_refused_request,
        )

    def create_table(
        self,
        dataset: str,
        name: str,
        merge_strategy: str = "append",
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create a table in the dataset's ``next`` version. Not idempotent: retried only on 429/503.

        ``append`` keeps the rows a table inherits from the previous version (a daily full reload
        doubles the table); ``replace`` starts each version from the new uploads.
        """
        if not isinstance(name, str) or not name.strip():
            raise RedivisConfigError(f"A table name must be a non-empty string, got {name!r}.")
        if merge_strategy not in MERGE_STRATEGIES:
            raise RedivisConfigError(f"merge_strategy must be 'append' or 'replace', got {merge_strategy!r}.")
        body: dict[str, Any] = {"name": name, "uploadMergeStrategy": merge_strategy}
        if description is not None:
            body["description"] = description
        return self._call(
            "POST",
            f"{self._dataset_path(dataset)}/tables",
            json_body=body,
            send_json=True,
            retry_if=is_refused_request,
        )

    # ----------------------------------------------------------------------------------------------
    # Airflow's connection test and form
    # ----------------------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """``GET /users/me``: cheap, and fails without a valid token. Never raises."""
        try:
            me = self._call("GET", "/users/me", retry_overrides={"stop": tenacity.stop_after_attempt(2)})
        except RedivisError as exc:
            return False, str(exc)
        except requests.RequestException as exc:
            secrets = (self._settings.token,) if self._settings else ()
            return False, _scrub(
                f"Could not reach {self.api_url}: {type(exc).__name__}: {_one_line(str(exc), 300)}", secrets
            )
        except Exception as exc:  # the UI wants (False, message), whatever happened
            return False, f"{type(exc).__name__}: {exc}"
        who = me.get("name") or me.get("userName") or me.get("email")
        return True, f"Connected to {self.api_url}" + (f" as {who}" if who else "") + "."

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow 2's connection form (Airflow 3.2+ reads ``conn-fields`` from the provider info)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        def label(name: str) -> Any:
            return lazy_gettext(CONN_FIELDS[name]["label"])

        def text(name: str) -> Any:
            return StringField(
                label(name), widget=BS3TextFieldWidget(), description=CONN_FIELDS[name]["description"]
            )

        return {
            "connect_timeout": text("connect_timeout"),
            "read_timeout": text("read_timeout"),
            "max_attempts": IntegerField(
                label("max_attempts"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(), NumberRange(min=1)],
                description=CONN_FIELDS["max_attempts"]["description"],
            ),
            "max_retry_seconds": text("max_retry_seconds"),
            "verify": BooleanField(  # a checkbox is never empty: it starts ticked
                lazy_gettext("Verify TLS certificates"),
                default=True,
                description="Leave ticked. Untick only for a test server with a self-signed certificate.",
            ),
            "scheme": text("scheme"),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow 2's form layout, from the same declaration as the 3.2+ ``ui-field-behaviour``."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }


def mask_session_url(url: str) -> None:
    """A session URL is a credential: Airflow's masker hides it whole and as the request line urllib3 logs."""
    parts = urlsplit(url)
    mask_secret(url)
    mask_secret(parts.path + (f"?{parts.query}" if parts.query else ""))
