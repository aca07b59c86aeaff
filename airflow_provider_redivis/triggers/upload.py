"""RedivisUploadTrigger: wait in the triggerer until Redivis has processed an upload.

The triggers waiting on uploads of one table share their status checks (``shared_poll.py``: one listing
of the table per interval, however many uploads). The sync hook is called through ``asyncio.to_thread``:
authentication, timeouts and the retry policy keep one home (the hook), and the event loop never blocks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_redivis.engine.status import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFERRED_POLL_INTERVAL,
    NEVER_SEEN,
    REASON_COMPLETED,
    REASON_ERROR,
    REASON_FAILED,
    REASON_REJECTED,
    REASON_TIMEOUT,
    UploadCheck,
    UploadOutcome,
    UploadTarget,
    summarize_upload,
    timeout_message,
    upload_failure,
)
from airflow_provider_redivis.errors import RedivisAPIError, RedivisConfigError
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.triggers.shared_poll import Waiter, waiting

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class RedivisUploadTrigger(BaseTrigger):
    """Poll an upload until Redivis has processed it, with backoff, and fire exactly one event.

    The triggers waiting on one table share their checks: the table is listed once per interval (the
    shortest ``poll_interval`` among them, backing off to the shortest ``max_poll_interval``) and each
    trigger takes its upload from that listing; each keeps its own deadline and event.

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
        redivis_conn_id: str = RedivisHook.default_conn_name,
        poll_interval: float = DEFERRED_POLL_INTERVAL,
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
        self.log.info(
            "Waiting for Redivis upload %s: a check every %.0f s or more (up to %.0f s), for at most %.0f s",
            self.target.describe(),
            self.poll_interval,
            self.max_poll_interval,
            max(0.0, self._left()),
        )
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
        # Every trigger waiting on this table shares the checks: one listing per interval answers all.
        async with waiting(
            self.redivis_conn_id,
            self.target,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            end_time=self.end_time,
        ) as waiter:
            return await self._follow(waiter)

    async def _follow(self, waiter: Waiter) -> dict[str, Any]:
        last: dict[str, Any] | None = None
        last_seen = NEVER_SEEN
        while True:
            try:
                check = await waiter.next_check()
            except (RedivisAPIError, RedivisConfigError) as exc:
                return _event("error", REASON_REJECTED, last, str(exc))
            last_seen = check.seen
            if check.error is not None:
                self.log.warning(
                    "Status check of upload %s failed, still waiting: %s", self.target.describe(), check.error
                )
            else:
                last = summarize_upload(check.upload) if check.upload is not None else None
                done = _finished(self.target, check)
                if done is not None:
                    return done
                self.log.info(
                    "Upload %s: %s; next check in %.1f s",
                    self.target.describe(),
                    last_seen,
                    max(0.0, min(waiter.next_check_in(), self._left())),
                )
            if self._left() <= 0:
                return _event(
                    "error", REASON_TIMEOUT, last, timeout_message(self.target, self.timeout, last_seen)
                )

    def _left(self) -> float:
        return self.end_time - time.time()


def _finished(target: UploadTarget, check: UploadCheck) -> dict[str, Any] | None:
    """The event for an upload Redivis is done with, or None while it is pending (or not created yet)."""
    upload = check.upload
    if upload is None or check.outcome is UploadOutcome.PENDING:
        return None
    if check.outcome is UploadOutcome.COMPLETED:
        rows = upload.get("numRows")
        return _event(
            "success",
            REASON_COMPLETED,
            summarize_upload(upload),
            f"Upload {target.describe()} completed" + (f" with {rows} rows" if rows is not None else ""),
        )
    return _event("error", REASON_FAILED, summarize_upload(upload), str(upload_failure(upload)))


def _event(status: str, reason: str, upload: dict[str, Any] | None, message: str) -> dict[str, Any]:
    return {"status": status, "reason": reason, "upload": upload, "message": message}
