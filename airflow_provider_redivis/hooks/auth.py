"""The token's one rule: it goes to the Redivis API's origin and nowhere else, redirects included.

A resumable session's URL is a credential of its own; :func:`mask_session_url` keeps it out of logs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from airflow.providers.common.compat.sdk import mask_secret
from requests.auth import AuthBase


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


def mask_session_url(url: str) -> None:
    """A session URL is a credential: Airflow's masker hides it whole and as the request line urllib3 logs."""
    parts = urlsplit(url)
    mask_secret(url)
    mask_secret(parts.path + (f"?{parts.query}" if parts.query else ""))
