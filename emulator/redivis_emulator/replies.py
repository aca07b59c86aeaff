"""What the emulator answers, as values: an HTTP reply, and how session answers become one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redivis_emulator.dialects import SessionReply, bare_200, final_reply
from redivis_emulator.sessions import reply_bytes

if TYPE_CHECKING:
    from redivis_emulator.catalog import ApiError
    from redivis_emulator.faults import Fault
    from redivis_emulator.sessions import ServerSession


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    #: For HEAD errors: the JSON that goes into X-REDIVIS-ERROR-PAYLOAD.
    error_payload: dict[str, Any] | None = None


def json_reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


def api_error_reply(error: ApiError) -> Reply:
    reply = json_reply(error.status, error.payload(), error.headers)
    reply.error_payload = error.payload()
    return reply


def session_reply(reply: SessionReply) -> Reply:
    headers = dict(reply.headers)
    if reply.content_type is not None:
        headers["Content-Type"] = reply.content_type
    elif reply.body is not None:
        headers["Content-Type"] = "application/json; charset=UTF-8"
    return Reply(reply.status, reply_bytes(reply), headers, reply.reason)


def misreport(fault: Fault, session: ServerSession, reply: Reply) -> Reply:
    """What ``empty_200``, ``early_200`` and ``lie`` make of a handled session request's answer."""
    if fault.kind == "empty_200" and reply.status in (200, 308):
        return session_reply(bare_200())
    if fault.kind == "early_200" and reply.status == 308:
        return session_reply(final_reply(session.facts_now(), session.dialect, session.reported_hashes))
    if fault.kind == "lie" and reply.status == 200 and session.facts is not None:
        fields = tuple((fault.lie_about or "").split(","))
        return session_reply(final_reply(session.facts.lie(fields), session.dialect, session.reported_hashes))
    return reply
