"""The one retry policy: what is worth retrying, how long to wait, when to give up.

Plain Python (tenacity, requests): the hook and the resumable-upload engine both build their
retries here, so a change of policy has one home.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import tenacity

from airflow_provider_redivis.errors import RedivisAPIError

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

#: Statuses worth another try: request timeout, rate limit, and the server-side failures.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES


def is_retryable_error(exc: BaseException) -> bool:
    """Connection errors, timeouts and the statuses above; never any other 4xx."""
    if isinstance(exc, RedivisAPIError):
        return is_retryable_status(exc.status)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return is_retryable_status(exc.response.status_code)
    # ConnectionError covers resets and refused connections; Timeout covers connect and read timeouts;
    # ChunkedEncodingError is a body cut off mid-stream.
    return isinstance(
        exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    )


#: Statuses that prove the server refused the request before acting on it: only these make a
#: non-idempotent call (creating an upload, a version, a table) safe to send again.
REFUSED_STATUSES = frozenset({429, 503})


def is_refused_request(exc: BaseException) -> bool:
    """For non-idempotent calls: retry only a 429/503 answer, never a connection error or timeout.

    A request that got no answer may have been carried out, so sending it again could create a
    second upload; the caller has to look before it tries again.
    """
    if isinstance(exc, RedivisAPIError):
        return exc.status in REFUSED_STATUSES
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code in REFUSED_STATUSES
    return False


def parse_retry_after(
    value: str | None, *, server_date: str | None = None, now: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None.

    An HTTP date is taken against ``server_date``, the answer's own ``Date`` header, when there is one: the
    server's clock, so that a worker whose clock is minutes off still waits what the server meant.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = _http_date(value)
    if when is None:
        return None
    reference = _http_date(server_date) if server_date else None
    if reference is None:
        reference = time.time() if now is None else now
    return max(0.0, when - reference)


def _http_date(value: str | None) -> float | None:
    try:
        return parsedate_to_datetime(value or "").timestamp()
    except (TypeError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded in attempts and in total time; exponential backoff with jitter."""

    max_attempts: int = 6
    max_total_seconds: float = 300.0
    initial_wait: float = 1.0
    max_wait: float = 60.0
    #: A server's Retry-After is honoured up to this many seconds.
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_total_seconds <= 0 or self.initial_wait < 0 or self.max_wait < 0:
            raise ValueError("retry waits and the total time must be positive")

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_wait, self.initial_wait * (2 ** (attempt - 1)))
        # Equal jitter (half to all of the ceiling): spreads the retries of many workers hitting one outage.
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, RedivisAPIError) else None
        return self.backoff(retry_state.attempt_number, retry_after)

    def retry_args(
        self,
        predicate: Callable[[BaseException], bool] = is_retryable_error,
        before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying``; callers may override any of them."""
        args: dict[str, Any] = {
            "retry": tenacity.retry_if_exception(predicate),
            # stop_before_delay (tenacity >= 8.3) counts the coming sleep, so a long Retry-After ends the
            # retries at once instead of overrunning max_total_seconds; older tenacity falls back.
            "stop": tenacity.stop_after_attempt(self.max_attempts)
            | getattr(tenacity, "stop_before_delay", tenacity.stop_after_delay)(self.max_total_seconds),
            "wait": self._wait,
            "reraise": True,
        }
        if before_sleep is not None:
            args["before_sleep"] = before_sleep
        return args

    def call(self, fn: Callable[[], T], **overrides: Any) -> T:
        """Run ``fn`` under this policy."""
        args = self.retry_args()
        args.update(overrides)
        return tenacity.Retrying(**args)(fn)
