"""The emulator's log of what it received, for tests to assert on. Thread-safe."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any

#: Paths that carry a credential (a resumable session's or a temp upload's token).
SESSION_PREFIX = "/upload/resumable/"
TEMP_PREFIX = "/tempUploads/"


#: Headers whose values are credentials: never in a repr, redacted wherever recorded headers are served.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-emulator-admin-token"})
REDACTED = "<redacted>"


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers (lower-cased names) with every credential's value replaced by ``<redacted>``."""
    return {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def redact_path(path: str) -> str:
    """Session and temp-upload URLs carry credentials: log only their prefix."""
    for prefix in (SESSION_PREFIX, TEMP_PREFIX):
        if path.startswith(prefix):
            return prefix + "…"
    return path


@dataclass
class RecordedRequest:
    """One request as the emulator saw it. Headers are kept whole in the process (a test tool, e.g. to
    see which token arrived where); credentials never reach a repr or :meth:`to_dict`."""

    method: str
    origin: str
    path: str
    query: str
    headers: dict[str, str]
    content_range: str | None
    started_at: float
    body_bytes: int = 0
    #: The status answered, or None when the connection was reset or closed without an answer.
    status: int | None = None
    #: Kinds of the faults that fired for this request.
    faults: tuple[str, ...] = ()
    session_id: str | None = None
    duration: float = 0.0
    #: Refused with 429 by the rate limit (``rate_limit=``), not handled.
    rate_limited: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Tokens never reach a repr (pytest prints reprs of failed assertions).
        shown = redact_headers(self.headers)
        return (
            f"RecordedRequest({self.method} {self.origin}:{redact_path(self.path)} status={self.status} "
            f"body_bytes={self.body_bytes} content_range={self.content_range!r} faults={self.faults} "
            f"rate_limited={self.rate_limited} headers={shown})"
        )

    @property
    def has_authorization(self) -> bool:
        return "authorization" in self.headers

    def to_dict(self) -> dict[str, Any]:
        """As ``GET /_emulator/requests`` serves it: credentials redacted (``has_authorization`` says one came)."""
        return {
            "method": self.method,
            "origin": self.origin,
            "path": self.path,
            "query": self.query,
            "headers": redact_headers(self.headers),
            "hasAuthorization": self.has_authorization,
            "contentRange": self.content_range,
            "startedAt": self.started_at,
            "bodyBytes": self.body_bytes,
            "status": self.status,
            "faults": list(self.faults),
            "sessionId": self.session_id,
            "duration": self.duration,
            "rateLimited": self.rate_limited,
        }


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, record: RecordedRequest) -> None:
        with self._lock:
            self._items.append(record)

    def snapshot(self) -> list[RecordedRequest]:
        """Copies, in arrival order (a request is logged when it arrives and updated when it ends)."""
        with self._lock:
            return [dataclasses.replace(r, headers=dict(r.headers)) for r in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def bytes_received(self, origin: str | None = None) -> int:
        with self._lock:
            return sum(r.body_bytes for r in self._items if origin is None or r.origin == origin)
