"""The API's errors, as the emulator raises and answers them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


class ApiError(Exception):
    """An API error, answered as ``{"error": {"status", "message"}}``."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "message": self.message}}


class InsufficientScopeError(ApiError):
    """403 with Redivis's OAuth-like shape: the token lacks a scope."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            403,
            f"This request needs the {scope} scope and the token does not have it. "
            f"Create an API token with {scope}.",
        )
        self.scope = scope

    def payload(self) -> dict[str, Any]:
        return {
            "error": "insufficient_scope",
            "error_description": self.message,
            "status": 403,
            "scope": self.scope,
        }
