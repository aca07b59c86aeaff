"""A small client of the admin API, for scripts driving an emulator in another process (stdlib only).

::

    from redivis_emulator.client import AdminClient

    admin = AdminClient("http://127.0.0.1:8765", admin_token)   # the CLI prints both, lines 1 and 2
    admin.add_fault({"kind": "reset", "origin": "session", "after_bytes": 1048576})
    admin.get("requests")                                        # any GET /_emulator/... route
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from redivis_emulator.admin import ADMIN_PREFIX, ADMIN_TOKEN_HEADER, JSON_MEDIA_TYPE

if TYPE_CHECKING:
    from collections.abc import Mapping


class AdminError(Exception):
    """The admin API answered an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class AdminClient:
    """``/_emulator/...`` over HTTP, with the admin token header on every request and JSON bodies."""

    def __init__(self, base_url: str, admin_token: str, *, timeout: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url is the emulator's http://host:port, got {base_url!r}.")
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"AdminClient({self.base_url!r})"

    def request(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        """``method /_emulator/{path}`` (``path`` with or without that prefix); the JSON answer."""
        path = path.removeprefix(ADMIN_PREFIX).lstrip("/")
        url = f"{self.base_url}{ADMIN_PREFIX}{path}" + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method.upper())  # noqa: S310 - http(s) checked above
        request.add_header(ADMIN_TOKEN_HEADER, self.admin_token)
        if data is not None:
            request.add_header("Content-Type", JSON_MEDIA_TYPE)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(text)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = text
            raise AdminError(exc.code, message) from None
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # -- the routes, by name --------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.get("health")

    def requests(self, origin: str | None = None) -> list[dict[str, Any]]:
        """What arrived (admin requests excepted), credentials redacted."""
        return self.get("requests", **({"origin": origin} if origin else {}))

    def clear_requests(self) -> None:
        self.delete("requests")

    def sessions(self) -> dict[str, Any]:
        return self.get("sessions")

    def expire_session(self, session_id: str) -> dict[str, Any]:
        return self.post(f"sessions/{session_id}/expire")

    def add_fault(self, fault: Mapping[str, Any]) -> dict[str, Any]:
        """One fault, as ``--fault``'s fields in JSON (``{"kind": "reset", "after_bytes": 1048576}``)."""
        added: list[dict[str, Any]] = self.post("faults", dict(fault))
        return added[0]

    def clear_faults(self) -> None:
        self.delete("faults")

    def uploads(self, table: str | None = None) -> list[dict[str, Any]]:
        return self.get("uploads", **({"table": table} if table else {}))

    def create_table(self, reference: str, merge_strategy: str = "append") -> dict[str, Any]:
        return self.post("tables", {"table": reference, "uploadMergeStrategy": merge_strategy})

    def rate_limit_counts(self) -> dict[str, Any]:
        """``GET rate-limit``: the limit, and API requests allowed / refused (429) in all and per token
        (keyed by :func:`~redivis_emulator.rate_limit.rate_limit_key`, never the token itself)."""
        return self.get("rate-limit")

    def set_rate_limit(
        self, rate_limit: tuple[int, float] | None, *, retry_after: str | None = None
    ) -> dict[str, Any]:
        """``POST rate-limit``: ``(limit, interval_seconds)`` or None (off); ``retry_after``: ``"date"`` or
        ``"seconds"`` (None: unchanged). Returns the counts."""
        body: dict[str, Any] = (
            {"limit": None}
            if rate_limit is None
            else {
                "limit": rate_limit[0],
                "intervalSeconds": rate_limit[1],
            }
        )
        if retry_after is not None:
            body["retryAfter"] = retry_after
        return self.post("rate-limit", body)

    def clear_rate_limit_counts(self) -> None:
        """``DELETE rate-limit``: forget every token's counts and window (the limit stays)."""
        self.delete("rate-limit")
