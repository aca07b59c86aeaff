"""From an Airflow connection to validated settings: base URL, token, timeouts, retry budget, TLS.

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
  ``max_retry_seconds`` (300 s), ``verify`` (true; or a CA bundle path), ``scheme``,
  ``rate_limit_interval`` (100 s: Redivis's rate-limit interval, which its answers do not carry).

``AIRFLOW_CONN_REDIVIS_DEFAULT='redivis://:TOKEN@'`` is enough for redivis.com.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from airflow.providers.common.compat.sdk import mask_secret

from airflow_provider_redivis import __version__
from airflow_provider_redivis.engine.request_budget import DEFAULT_INTERVAL
from airflow_provider_redivis.engine.retry import RetryPolicy
from airflow_provider_redivis.errors import RedivisConfigError
from airflow_provider_redivis.provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.providers.common.compat.sdk import Connection

DEFAULT_HOST = "redivis.com"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
API_PATH = "/api/v1"

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
    rate_limit_interval: float = DEFAULT_INTERVAL

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
            rate_limit_interval=_positive_number(extras, "rate_limit_interval", DEFAULT_INTERVAL),
        )


def connection_form_widgets() -> dict[str, Any]:
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
        "rate_limit_interval": text("rate_limit_interval"),
    }


def ui_field_behaviour() -> dict[str, Any]:
    """Airflow 2's form layout, from the same declaration as the 3.2+ ``ui-field-behaviour``."""
    return {
        "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
        "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
        "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
    }
