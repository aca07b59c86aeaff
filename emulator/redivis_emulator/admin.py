"""The ``/_emulator/...`` admin API: for scripts driving an emulator in another process."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from redivis_emulator.catalog import ApiError
from redivis_emulator.faults import fault_from_mapping
from redivis_emulator.replies import Reply, json_reply

if TYPE_CHECKING:
    from redivis_emulator.server import RedivisEmulator
    from redivis_emulator.wire import BodyReader


def known_keys(data: Any, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise ValueError("The body must be a JSON object.")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"Unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")


def admin_route(
    emu: RedivisEmulator, method: str, seg: list[str], params: dict[str, str], body: BodyReader
) -> Reply:
    """One ``/_emulator/...`` request (unauthenticated, unlogged), as a reply; errors raise."""

    def read_json() -> Any:
        data = body.read_all()
        return json.loads(data) if data.strip() else None

    if seg == ["health"] and method == "GET":
        return json_reply(200, {"ok": True, "baseUrl": emu.base_url, "sessionBaseUrl": emu.session_base_url})
    if seg == ["requests"]:
        if method == "GET":
            origin = params.get("origin")
            items = [r.to_dict() for r in emu.requests if origin is None or r.origin == origin]
            return json_reply(200, items)
        if method == "DELETE":
            emu.clear_requests()
            return json_reply(200, {"cleared": True})
    if seg == ["sessions"] and method == "GET":
        return json_reply(200, {sid: info.to_dict() for sid, info in emu.sessions.items()})
    if len(seg) == 3 and seg[0] == "sessions" and seg[2] == "expire" and method == "POST":
        emu.expire_session(seg[1])
        return json_reply(200, emu.sessions[seg[1]].to_dict())
    if len(seg) == 2 and seg[0] == "sessions" and method in ("GET", "POST"):
        if method == "POST":
            data = read_json() or {}
            known_keys(data, {"dialect", "keepPartialRequests"})
            emu.set_session_options(
                seg[1], dialect=data.get("dialect"), keep_partial_requests=data.get("keepPartialRequests")
            )
        return json_reply(200, emu.sessions[seg[1]].to_dict())
    if seg == ["settings"]:
        if method == "GET":
            return json_reply(200, emu.session_settings)
        if method == "POST":
            data = read_json() or {}
            known_keys(data, {"sessionDialect", "tempSessionDialect", "keepPartialRequests"})
            return json_reply(
                200,
                emu.configure_sessions(
                    session_dialect=data.get("sessionDialect"),
                    temp_session_dialect=data.get("tempSessionDialect"),
                    keep_partial_requests=data.get("keepPartialRequests"),
                ),
            )
    if seg == ["uploads"] and method == "GET":
        table = params.get("table")
        if table:
            return json_reply(200, emu.list_uploads(table))
        return json_reply(200, emu.all_uploads())
    if seg == ["faults"]:
        if method == "GET":
            return json_reply(200, [f.to_dict() for f in emu.faults.snapshot()])
        if method == "POST":
            data = read_json()
            items = data if isinstance(data, list) else [data]
            added = [emu.add_fault(fault_from_mapping(item)).to_dict() for item in items]
            return json_reply(200, added)
        if method == "DELETE":
            emu.clear_faults()
            return json_reply(200, {"cleared": True})
    if seg == ["tables"] and method == "POST":
        data = read_json() or {}
        reference = data.get("table") or data.get("reference")
        if not isinstance(reference, str):
            raise ValueError('POST /_emulator/tables wants {"table": "owner.dataset.table"}.')
        emu.create_table(reference, data.get("uploadMergeStrategy") or "append")
        return json_reply(200, emu.catalog.get_table(reference))
    raise ApiError(404, f"No admin endpoint {method} /_emulator/{'/'.join(seg)}.")
