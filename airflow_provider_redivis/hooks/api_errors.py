"""An HTTP error answer turned into the exception that says what Redivis said and what to do.

Redivis words errors two ways (see :func:`parse_error_payload`), and a HEAD answer carries its error in a
header. Every message passes :func:`scrub`, so no token or session URL rides in an exception.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from airflow_provider_redivis.engine.retry import parse_retry_after
from airflow_provider_redivis.errors import (
    RedivisAPIError,
    RedivisAuthError,
    RedivisConflictError,
    RedivisNotFoundError,
    RedivisRateLimitError,
    RedivisServerError,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    import requests

#: Redivis puts a HEAD response's error JSON, URL-encoded, in this header (a HEAD has no body).
ERROR_PAYLOAD_HEADER = "X-REDIVIS-ERROR-PAYLOAD"
WARNING_HEADER = "X-REDIVIS-WARNING"
#: How much of a server's error text goes into an exception message.
MAX_ERROR_TEXT = 500


def one_line(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        return f"{text[:limit]}… ({len(text) - limit} more characters)"
    return text


def scrub(text: str, secrets: Collection[str]) -> str:
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
            "Redivis allows about 100 API requests per 100 s for a token: spread the loads over the day, "
            "poll less often, or ask Redivis for a higher limit"
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
        scrub(one_line(message), secrets),
        code=scrub(code, secrets) if code else None,
        method=method.upper(),
        path=path,
        retry_after=parse_retry_after(
            response.headers.get("Retry-After"), server_date=response.headers.get("Date")
        ),
        hint=_hint(status, code, scope),
    )
