"""Redivis's API rate limit: about 100 requests per 100-second interval, each token its own budget.

Redivis ("Limits and errors" in its API documentation) puts ``X-RateLimit-Limit`` and
``X-RateLimit-Remaining`` on every API answer and, past the limit, answers 429 with ``Retry-After``:
"the timestamp for when your quota will replenish", an HTTP date.

The emulator's model, a fixed window per budget: a budget's window opens with its first API request
after the previous window ended and lasts ``interval`` seconds; in it, ``limit`` requests are allowed
and every later one is refused (a refusal uses none of the budget). Each known bearer token has its
own budget; every request without one (no ``Authorization``, another scheme, an unknown token) counts
against one shared ``anonymous`` budget. Thread-safe.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from redivis_emulator.errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Callable

#: What Redivis documents: about 100 requests per 100-second interval.
REDIVIS_RATE_LIMIT = (100, 100.0)
#: How a 429's ``Retry-After`` is written: an HTTP date (Redivis's way) or delta-seconds.
RETRY_AFTER_FORMATS = ("date", "seconds")
ANONYMOUS = "anonymous"
LIMIT_HEADER = "X-RateLimit-Limit"
REMAINING_HEADER = "X-RateLimit-Remaining"

RateLimit = tuple[int, float]


class _Keep:
    """The type of :data:`KEEP`."""


#: ``RateLimiter.configure(rate_limit=KEEP)``: leave the limit as it is.
KEEP = _Keep()


def check_rate_limit(value: object) -> RateLimit | None:
    """``(limit, interval_seconds)`` checked, or None (no limit); ValueError saying what is wanted."""
    return None if value is None else _checked_pair(value)


def _checked_pair(value: object) -> RateLimit:
    wanted = "rate_limit is (limit, interval_seconds), e.g. (100, 100.0), or None for no limit"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{wanted}; got {value!r}.")
    limit, interval = value
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{wanted}; the limit must be a whole number >= 1, got {limit!r}.")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < math.inf:
        raise ValueError(f"{wanted}; the interval must be a number of seconds > 0, got {interval!r}.")
    return limit, float(interval)


def parse_rate_limit(text: str) -> RateLimit:
    """``"100/100"`` (requests / seconds, as ``--rate-limit`` takes it) -> ``(100, 100.0)``."""
    count, sep, seconds = text.partition("/")
    try:
        parsed = (int(count), float(seconds)) if sep else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"a rate limit is REQUESTS/SECONDS, e.g. 100/100, got {text!r}")
    return _checked_pair(parsed)


def check_retry_after(value: object) -> str:
    if value not in RETRY_AFTER_FORMATS:
        raise ValueError(f"retry_after is 'date' (an HTTP date, as Redivis) or 'seconds', got {value!r}.")
    return str(value)


def rate_limit_key(token: str | None) -> str:
    """How the counts name a token's budget, never the token itself: ``sha256:`` and the first 12 hex
    digits of the token's SHA-256; ``anonymous`` for None (requests without a known token)."""
    if token is None:
        return ANONYMOUS
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


@dataclass
class _Budget:
    allowed: int = 0
    refused: int = 0
    window_start: float | None = None
    used: int = 0


@dataclass(frozen=True)
class Admission:
    """The limiter's answer to one API request: the headers its answer carries, and the 429 if refused."""

    headers: dict[str, str] = field(default_factory=dict)
    refusal: ApiError | None = None


class RateLimiter:
    """The budgets of the API origin's requests (``/api/v1/...`` only) and their counts.

    Counts (requests allowed and refused per budget) are kept whether or not a limit is on; windows
    only while one is. ``clock``: seconds since the epoch (``time.time``), replaceable in tests.
    """

    def __init__(
        self,
        rate_limit: object = None,
        *,
        retry_after: str = "date",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock or time.time
        self._limit = check_rate_limit(rate_limit)
        self._retry_after = check_retry_after(retry_after)
        self._budgets: dict[str, _Budget] = {}

    @property
    def limit(self) -> RateLimit | None:
        return self._limit

    @property
    def retry_after(self) -> str:
        return self._retry_after

    def configure(self, *, rate_limit: object = KEEP, retry_after: str | None = None) -> None:
        """A new limit (None: off) starts a fresh window for every budget at its next request; the
        counts stay. ``KEEP`` / None: unchanged."""
        checked = None if isinstance(rate_limit, _Keep) else check_rate_limit(rate_limit)
        fmt = None if retry_after is None else check_retry_after(retry_after)
        with self._lock:
            if not isinstance(rate_limit, _Keep):
                self._limit = checked
                for budget in self._budgets.values():
                    budget.window_start, budget.used = None, 0
            if fmt is not None:
                self._retry_after = fmt

    def clear(self) -> None:
        """Forget every budget: counts and windows."""
        with self._lock:
            self._budgets.clear()

    def admit(self, token: str | None) -> Admission:
        """Count one API request of ``token`` (None: the anonymous budget); refuse it when over."""
        key = rate_limit_key(token)
        with self._lock:
            now = self._clock()
            budget = self._budgets.setdefault(key, _Budget())
            if self._limit is None:
                budget.allowed += 1
                return Admission()
            limit, interval = self._limit
            if budget.window_start is None or now >= budget.window_start + interval:
                budget.window_start, budget.used = now, 0
            headers = {LIMIT_HEADER: str(limit)}
            if budget.used < limit:
                budget.used += 1
                budget.allowed += 1
                headers[REMAINING_HEADER] = str(limit - budget.used)
                return Admission(headers)
            budget.refused += 1
            end = budget.window_start + interval
            fmt = self._retry_after
        # An HTTP date has whole seconds: round up, so that a client waiting until then is not early.
        date = formatdate(math.ceil(end), usegmt=True)
        headers[REMAINING_HEADER] = "0"
        headers["Retry-After"] = date if fmt == "date" else str(max(1, math.ceil(end - now)))
        who = (
            "this API token"
            if token is not None
            else "requests without a valid API token (one shared budget)"
        )
        message = (
            f"Rate limit exceeded: {who} made {limit} API requests in this {interval:g}-second interval, "
            f"the most allowed. The quota replenishes at {date} (Retry-After); wait until then, and make "
            "fewer API calls."
        )
        return Admission(headers, ApiError(429, message))

    def counts(self) -> dict[str, Any]:
        """The settings, the totals and each budget's counts and window (``GET /_emulator/rate-limit``)."""
        with self._lock:
            now = self._clock()
            limit = self._limit
            budgets = {key: _budget_dict(b, limit, now) for key, b in self._budgets.items()}
            fmt = self._retry_after
        return {
            "limit": limit[0] if limit else None,
            "intervalSeconds": limit[1] if limit else None,
            "retryAfter": fmt,
            "allowed": sum(b["allowed"] for b in budgets.values()),
            "refused": sum(b["refused"] for b in budgets.values()),
            "tokens": budgets,
        }


def empty_budget(limit: RateLimit | None) -> dict[str, Any]:
    """A budget that has seen no request (what :meth:`RateLimiter.counts` would show for it)."""
    return _budget_dict(_Budget(), limit, 0.0)


def _budget_dict(budget: _Budget, limit: RateLimit | None, now: float) -> dict[str, Any]:
    current = limit is not None and budget.window_start is not None and now < budget.window_start + limit[1]
    start = budget.window_start if current else None
    used = budget.used if current else 0
    return {
        "allowed": budget.allowed,
        "refused": budget.refused,
        # The window in force now; None when none is (the next request opens one).
        "windowStart": start,
        "windowEnd": start + limit[1] if start is not None and limit is not None else None,
        "used": used if limit is not None else None,
        "remaining": limit[0] - used if limit is not None else None,
    }
