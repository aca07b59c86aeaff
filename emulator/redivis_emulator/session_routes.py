"""The session origin's routes: ``/upload/resumable/{token}`` with Cloud Storage's rules (the rules
themselves are in ``sessions.py``), and the reply a ``status`` fault answers on either origin."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from redivis_emulator.errors import ApiError
from redivis_emulator.recording import SESSION_PREFIX
from redivis_emulator.replies import Reply, api_error_reply, session_reply
from redivis_emulator.sessions import ContentRange, gcs_error, parse_content_range
from redivis_emulator.wire import floor_unit

if TYPE_CHECKING:
    from redivis_emulator.faults import Fault
    from redivis_emulator.wire import BodyReader


def content_range_of(
    headers: dict[str, str], content_length: int | None
) -> tuple[ContentRange | None, str | None]:
    value = headers.get("content-range")
    if value is None:
        # No Content-Range: the whole object in this one request (Cloud Storage's single-request upload).
        if content_length is None:
            return (
                None,
                "A PUT to a resumable session needs Content-Range (or Content-Length for the whole object).",
            )
        if content_length == 0:
            return ContentRange(None, None, 0), None
        return ContentRange(0, content_length - 1, content_length), None
    try:
        return parse_content_range(value), None
    except ValueError as exc:
        return None, str(exc)


def fault_status_reply(fault: Fault, origin: str) -> Reply:
    status = fault.status or 500
    headers = dict(fault.headers or {})
    message = fault.message or f"Emulated {status} (fault injection)."
    if fault.body is not None:
        body = fault.body
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = bytes(body)  # type: ignore[arg-type]
        reply = Reply(status, data, headers)
        if origin == "api":
            reply.error_payload = {"error": {"status": status, "message": message}}
        return reply
    if origin == "session":
        reply = session_reply(gcs_error(status, message))
        reply.headers.update(headers)
        return reply
    reply = api_error_reply(ApiError(status, message, headers=headers))
    return reply


# -- routing -------------------------------------------------------------------------------


def session_route(
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: BodyReader,
    session: Any,
    content_range: ContentRange | None,
    range_error: str | None,
    transport: Fault | None,
) -> Reply:
    if not raw_path.startswith(SESSION_PREFIX) or session is None:
        return session_reply(gcs_error(404, "No such upload session. Start a new one."))
    if method == "DELETE":
        # Cloud Storage answers a cancel with 499; the session is gone afterwards.
        session.cancel()
        return Reply(499, b"", {}, "Client Closed Request")
    if method != "PUT":
        return session_reply(
            gcs_error(405, "A resumable session takes PUT (chunks, status queries) or DELETE.")
        )
    if content_range is None:
        return session_reply(gcs_error(400, range_error or "Content-Range is required."))
    keep_bytes = None
    if (
        transport is not None
        and transport.kind == "partial"
        and content_range.first is not None
        and content_range.last is not None
    ):
        length = content_range.last - content_range.first + 1
        # Default: one 256 KiB unit short of the whole chunk.
        keep_bytes = (
            transport.keep_bytes if transport.keep_bytes is not None else floor_unit(max(0, length - 1))
        )
    elif transport is not None and transport.kind in ("reset", "status") and transport.keep_bytes is not None:
        keep_bytes = transport.keep_bytes
    return session_reply(
        session.put(
            body,
            content_range,
            keep_bytes=keep_bytes,
            goog_hash=headers.get("x-goog-hash"),
            keep_partial=transport.keep_partial if transport is not None else None,
        )
    )
