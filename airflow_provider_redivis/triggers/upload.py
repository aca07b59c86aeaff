"""RedivisUploadTrigger: wait in the triggerer until Redivis has processed an upload.

The sync hook is called through ``asyncio.to_thread``: authentication, timeouts and the retry policy
keep one home (the hook), and the event loop never blocks on a request.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_redivis.errors import RedivisAPIError, RedivisConfigError, RedivisNotFoundError
from airflow_provider_redivis.retry import is_retryable_error
from airflow_provider_redivis.upload_status import (
    UploadOutcome,
    summarize_upload,
    upload_failure,
    upload_outcome,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from airflow_provider_redivis.hooks.redivis import RedivisHook

DEFAULT_CONN_ID = "redivis_default"
#: Each quiet poll waits this much longer than the one before, up to ``max_poll_interval``.
BACKOFF_FACTOR = 1.5
#: The default cap of the backoff: processing a large upload takes minutes, and a minute late is fine.
DEFAULT_MAX_POLL_INTERVAL = 60.0

# Event ``reason``s beside ``status`` ("success" | "error"): what a task resuming from the event does.
REASON_COMPLETED = "completed"  # the upload is processed
REASON_FAILED = "failed"  # Redivis could not process it: another try meets the same file
REASON_TIMEOUT = "timeout"  # still pending at the deadline
REASON_REJECTED = "rejected"  # Redivis refused the request (401, 403, 404, ...): waiting cannot fix it
REASON_ERROR = "error"  # anything unexpected: a new try may do better


def poll_intervals(first: float, cap: float) -> Iterator[float]:
    """Seconds between status checks: ``first``, then 1.5x longer each time, never more than ``cap``."""
    interval = min(first, cap)
    while True:
        yield interval
        interval = min(interval * BACKOFF_FACTOR, cap)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def describe_upload_state(upload: dict[str, Any] | None) -> str:
    """What one look at the upload saw, in words for a log or an error message."""
    if upload is None:
        return "not created yet"
    status = upload.get("status")
    if status is None:
        return "status null (no content yet)"
    return f"status {status!r}"


@dataclass(frozen=True)
class UploadTarget:
    """The upload to wait for: its ``uri`` (as the upload operator returns it), or table and name.

    With a ``uri``, ``upload_name`` only labels the log lines and messages.
    """

    upload_uri: str | None = None
    table: str | None = None
    upload_name: str | None = None

    def __post_init__(self) -> None:
        if self.upload_uri:
            return
        if not (self.table and self.upload_name):
            raise RedivisConfigError(
                "Say which upload to wait for: either upload (the upload operator's result, or its uri) or "
                "both table and upload_name."
            )

    def describe(self) -> str:
        if self.upload_uri:
            return f"{self.upload_name!r} ({self.upload_uri})" if self.upload_name else self.upload_uri
        return f"{self.upload_name!r} in {self.table}"

    def fetch(self, hook: RedivisHook) -> dict[str, Any] | None:
        """The upload resource, or None when it does not exist yet (only when looked up by name)."""
        if self.upload_uri:
            try:
                return hook.get_upload_by_uri(self.upload_uri)
            except RedivisNotFoundError as exc:
                raise RedivisNotFoundError(
                    exc.status,
                    exc.message,
                    code=exc.code,
                    method=exc.method,
                    path=exc.path,
                    hint="The upload was deleted (replaced by another run?) or the token can no longer see it: "
                    "there is nothing left to wait for",
                ) from exc
        # __post_init__ guarantees both when there is no uri.
        table, name = cast("str", self.table), cast("str", self.upload_name)
        try:
            return hook.get_upload(table, name)
        except RedivisNotFoundError:
            # Another task may still be sending the file: keep waiting, but only for a table that
            # exists, since waiting never creates a missing table.
            hook.get_table(table)
            return None


class RedivisUploadTrigger(BaseTrigger):
    """Poll an upload until Redivis has processed it, with backoff, and fire exactly one event.

    The event payload is ``{"status": "success" | "error", "reason": ..., "upload": <summary or None>,
    "message": str}``; ``upload`` is :func:`summarize_upload` of the last resource seen and ``reason`` is
    one of ``completed``, ``failed``, ``timeout``, ``rejected``, ``error``.

    :param upload_uri: the upload's ``uri`` as Redivis returned it.
    :param table: with ``upload_name``, the upload to look up by name instead (it may not exist yet).
    :param poll_interval: seconds before the second look; each quiet poll waits 1.5x longer.
    :param max_poll_interval: the cap of that backoff (default: the larger of 60 s and ``poll_interval``).
    :param timeout: seconds to wait in all.
    :param end_time: the deadline as a UNIX timestamp; set by ``serialize()`` so that a triggerer restart
        keeps the original deadline instead of starting the clock again.
    """

    def __init__(
        self,
        upload_uri: str | None = None,
        redivis_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        timeout: float = 24 * 3600.0,
        *,
        table: str | None = None,
        upload_name: str | None = None,
        max_poll_interval: float | None = None,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        if poll_interval <= 0 or timeout <= 0:
            raise RedivisConfigError("poll_interval and timeout must be positive numbers of seconds.")
        if max_poll_interval is not None and max_poll_interval <= 0:
            raise RedivisConfigError("max_poll_interval must be a positive number of seconds.")
        self.target = UploadTarget(upload_uri=upload_uri, table=table, upload_name=upload_name)
        self.redivis_conn_id = redivis_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(
            max_poll_interval
            if max_poll_interval is not None
            else max(DEFAULT_MAX_POLL_INTERVAL, poll_interval)
        )
        self.timeout = float(timeout)
        self.end_time = float(end_time) if end_time is not None else time.time() + self.timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "upload_uri": self.target.upload_uri,
                "redivis_conn_id": self.redivis_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "table": self.target.table,
                "upload_name": self.target.upload_name,
                "max_poll_interval": self.max_poll_interval,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            payload = await self._wait()
        except Exception as exc:
            # Every failure becomes the one event: a trigger that raises leaves the task to the triggerer's
            # generic error instead of this message.
            self.log.exception("Waiting for Redivis upload %s failed", self.target.describe())
            payload = _event(
                "error",
                REASON_ERROR,
                None,
                f"Waiting for Redivis upload {self.target.describe()} failed: {type(exc).__name__}: {exc}",
            )
        yield TriggerEvent(payload)

    async def _wait(self) -> dict[str, Any]:
        hook = await asyncio.to_thread(self._make_hook)
        try:
            return await self._poll(hook)
        finally:
            hook.close()  # the pooled connections; the triggerer process lives on

    async def _poll(self, hook: RedivisHook) -> dict[str, Any]:
        intervals = poll_intervals(self.poll_interval, self.max_poll_interval)
        last: dict[str, Any] | None = None
        last_seen = "never: no status check has succeeded"
        while True:
            # +-20 %: waits deferred together (a mapped upload over many files) spread out instead of
            # polling in step, which at a few hundred waits would meet Redivis's rate limit.
            delay = next(intervals) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
            checked_at = utc_now()
            try:
                upload = await asyncio.to_thread(self.target.fetch, hook)
            except (RedivisAPIError, RedivisConfigError) as exc:
                if not is_retryable_error(exc):
                    return _event("error", REASON_REJECTED, last, str(exc))
                last_seen = f"answering with an error ({describe_error(exc)}) at {iso_time(checked_at)}"
                if isinstance(exc, RedivisAPIError) and exc.retry_after:
                    delay = max(delay, exc.retry_after)
                self.log.warning(
                    "Status check of upload %s failed, still waiting: %s", self.target.describe(), exc
                )
            except Exception as exc:
                if not is_retryable_error(exc):
                    raise
                last_seen = f"unreachable ({describe_error(exc)}) at {iso_time(checked_at)}"
                self.log.warning(
                    "Status check of upload %s failed, still waiting: %s", self.target.describe(), exc
                )
            else:
                last = summarize_upload(upload) if upload is not None else None
                last_seen = f"{describe_upload_state(upload)} at {iso_time(checked_at)}"
                done = _finished(self.target, upload)
                if done is not None:
                    return done
                self.log.info(
                    "Upload %s: %s; next check in %.1f s",
                    self.target.describe(),
                    last_seen,
                    max(0.0, min(delay, self._left())),
                )
            left = self._left()
            if left <= 0:
                return _event(
                    "error", REASON_TIMEOUT, last, timeout_message(self.target, self.timeout, last_seen)
                )
            await asyncio.sleep(min(delay, left))

    def _make_hook(self) -> RedivisHook:
        from airflow_provider_redivis.hooks.redivis import RedivisHook

        policy = RedivisHook(redivis_conn_id=self.redivis_conn_id).retry_policy
        # One status check retries within the connection's policy, but not for longer than the poll cap:
        # past that the loop here takes over, and it knows the deadline.
        capped = replace(policy, max_total_seconds=min(policy.max_total_seconds, self.max_poll_interval))
        return RedivisHook(redivis_conn_id=self.redivis_conn_id, retry_policy=capped)

    def _left(self) -> float:
        return self.end_time - time.time()


def _finished(target: UploadTarget, upload: dict[str, Any] | None) -> dict[str, Any] | None:
    """The event for an upload Redivis is done with, or None while it is pending (or not created yet)."""
    if upload is None:
        return None
    outcome = upload_outcome(upload)
    if outcome is UploadOutcome.COMPLETED:
        rows = upload.get("numRows")
        return _event(
            "success",
            REASON_COMPLETED,
            summarize_upload(upload),
            f"Upload {target.describe()} completed" + (f" with {rows} rows" if rows is not None else ""),
        )
    if outcome is UploadOutcome.FAILED:
        return _event("error", REASON_FAILED, summarize_upload(upload), str(upload_failure(upload)))
    return None


def timeout_message(target: UploadTarget, timeout: float, last_seen: str) -> str:
    return (
        f"Gave up waiting for Redivis upload {target.describe()} after {timeout:.0f} s; it was last seen "
        f"{last_seen}. Processing goes on in Redivis: wait longer (a larger timeout) or look at the upload in "
        "the Redivis web app."
    )


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, RedivisAPIError):
        return f"{exc.status}: {exc.message}"
    return type(exc).__name__


def iso_time(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _event(status: str, reason: str, upload: dict[str, Any] | None, message: str) -> dict[str, Any]:
    return {"status": status, "reason": reason, "upload": upload, "message": message}
