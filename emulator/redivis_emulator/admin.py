"""The ``/_emulator/...`` admin API: for scripts driving an emulator in another process.

Guarded, because it can change what the emulator answers and shows what it received:

- every request carries the per-run admin token in ``X-Emulator-Admin-Token`` (the command line
  prints it on its second line; ``RedivisEmulator.admin_token`` in Python); without it: 401;
- a request with a body says ``Content-Type: application/json`` (else 415), so that a web page
  cannot send one without a CORS preflight, which the emulator never grants;
- the ``Host`` check of every origin (``handler.py``) refuses DNS-rebound names.

Recorded ``Authorization`` (and cookie, admin-token) values are redacted in what it serves.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any, Protocol

from redivis_emulator.errors import ApiError
from redivis_emulator.fault_specs import fault_from_mapping
from redivis_emulator.rate_limit import KEEP
from redivis_emulator.replies import Reply, json_reply

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from redivis_emulator.catalog import Catalog
    from redivis_emulator.faults import Fault, FaultBook
    from redivis_emulator.rate_limit import RateLimiter
    from redivis_emulator.recording import RecordedRequest
    from redivis_emulator.sessions import SessionInfo
    from redivis_emulator.wire import BodyReader

ADMIN_PREFIX = "/_emulator/"
#: The header that carries the per-run admin token.
ADMIN_TOKEN_HEADER = "X-Emulator-Admin-Token"  # noqa: S105 - a header name, not a secret
JSON_MEDIA_TYPE = "application/json"


class AdminTarget(Protocol):
    """What the admin routes act on: :class:`~redivis_emulator.server.RedivisEmulator` provides it."""

    faults: FaultBook
    rate_limiter: RateLimiter

    @property
    def base_url(self) -> str: ...

    @property
    def session_base_url(self) -> str: ...

    @property
    def catalog(self) -> Catalog: ...

    @property
    def requests(self) -> list[RecordedRequest]: ...

    def clear_requests(self) -> None: ...

    @property
    def sessions(self) -> dict[str, SessionInfo]: ...

    def expire_session(self, session_id: str) -> None: ...

    def set_session_options(
        self, session_id: str, *, dialect: str | None = None, keep_partial_requests: bool | None = None
    ) -> SessionInfo: ...

    @property
    def session_settings(self) -> dict[str, Any]: ...

    def configure_sessions(
        self,
        *,
        session_dialect: str | None = None,
        temp_session_dialect: str | None = None,
        keep_partial_requests: bool | None = None,
    ) -> dict[str, Any]: ...

    def list_uploads(self, table_ref: str) -> list[dict[str, Any]]: ...

    def all_uploads(self) -> list[dict[str, Any]]: ...

    def add_fault(self, fault: Fault) -> Fault: ...

    def clear_faults(self) -> None: ...

    def create_table(self, reference: str, merge_strategy: str = "append") -> dict[str, Any]: ...

    def rate_limit_counts(self) -> dict[str, Any]: ...

    def clear_rate_limit_counts(self) -> None: ...


def admin_refusal(headers: Mapping[str, str], admin_token: str, *, has_body: bool) -> ApiError | None:
    """Why this admin request is refused (headers lower-cased), or None when it may go on."""
    supplied = headers.get(ADMIN_TOKEN_HEADER.lower(), "")
    if not hmac.compare_digest(supplied.encode("utf-8", "replace"), admin_token.encode()):
        return ApiError(
            401,
            f"The admin API needs the header '{ADMIN_TOKEN_HEADER}: <admin token>'. The command line prints "
            "the token on its second line; in Python it is RedivisEmulator.admin_token.",
        )
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if has_body and media_type != JSON_MEDIA_TYPE:
        return ApiError(
            415,
            f"An admin request with a body must be 'Content-Type: {JSON_MEDIA_TYPE}', got {media_type!r}.",
        )
    return None


def known_keys(data: Any, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise ValueError("The body must be a JSON object.")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"Unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")


def admin_route(
    emu: AdminTarget, method: str, seg: list[str], params: dict[str, str], body: BodyReader
) -> Reply:
    """One ``/_emulator/...`` request (past :func:`admin_refusal`; not logged), as a reply; errors raise."""

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
    if seg == ["rate-limit"]:
        return _rate_limit_route(emu, method, read_json)
    raise ApiError(404, f"No admin endpoint {method} /_emulator/{'/'.join(seg)}.")


def _rate_limit_route(emu: AdminTarget, method: str, read_json: Callable[[], Any]) -> Reply:
    """``GET`` the counts; ``POST {"limit": 20, "intervalSeconds": 10, "retryAfter": "seconds"}``
    (``"limit": null`` turns it off; a field left out stays); ``DELETE`` forgets the counts."""
    if method == "GET":
        return json_reply(200, emu.rate_limit_counts())
    if method == "POST":
        data = read_json() or {}
        known_keys(data, {"limit", "intervalSeconds", "retryAfter"})
        limit = data.get("limit", KEEP)
        if "intervalSeconds" in data and limit in (KEEP, None):
            raise ValueError('Give "limit" with "intervalSeconds" ("limit": null turns the limit off).')
        if limit not in (KEEP, None):
            if "intervalSeconds" not in data:
                raise ValueError(
                    'Give "intervalSeconds" with "limit", e.g. {"limit": 100, "intervalSeconds": 100}.'
                )
            limit = (limit, data["intervalSeconds"])
        emu.rate_limiter.configure(rate_limit=limit, retry_after=data.get("retryAfter"))
        return json_reply(200, emu.rate_limit_counts())
    if method == "DELETE":
        emu.clear_rate_limit_counts()
        return json_reply(200, {"cleared": True})
    raise ApiError(405, f"{method} /_emulator/rate-limit: use GET, POST or DELETE.")
